"""The console, used as an operator uses it: keys pressed with Textual's Pilot, against the real gateway
and our orchestrator running inside the app, and agents calling over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from console.app import ConsoleApp
from console.modals.permission_request import PermissionRequestModal
from console.modals.text_view import TextView
from console.screens.dashboard import call_row
from console.widgets.lines_table import LinesTable
from gateway_core.auth import create_agent
from gateway_core.catalog import DEFAULT_CATALOG, Catalog
from gateway_core.clock import FrozenClock
from gateway_core.config import load_settings
from gateway_core.redaction import printable
from sandbox import Sandbox
from tests.cli import mcp_console
from tests.echo_service import ECHO_SPEC, EchoHandler, create_echo_upstream
from tests.servers import serve_asgi
from tests.test_wire_contract import execute


async def until(pilot: Pilot[None], condition: Callable[[], bool], within: float = 10.0) -> None:
    """Waits until `condition()` holds; fails quoting the condition it waited for."""
    try:
        async with asyncio.timeout(within):
            while not condition():
                await pilot.pause(0.02)
    except TimeoutError:
        raise AssertionError(f"waited {within:g} s for: {inspect.getsource(condition).strip()}") from None


@contextlib.asynccontextmanager
async def console(tmp_path: Path, read_only: bool = False, sandbox: Sandbox | None = None,
                  size: tuple[int, int] = (120, 40), **options: Any) -> AsyncIterator[tuple[ConsoleApp, Pilot[None]]]:
    configured = options.pop("settings", {})
    # Keys are pressed the moment a request is up (test_console_terminal.py and one test here keep the guard).
    configured["console"] = {"decision_guard_seconds": 0, **configured.get("console", {})}
    async with serve_asgi(create_echo_upstream()) as upstream:
        settings = load_settings(None, store={"path": tmp_path / "console.db"}, server={"port": 0}, **configured)
        app = ConsoleApp(settings, orchestrator_port=0, read_only=read_only, sandbox=sandbox, login="alice",
                         catalog=Catalog((*DEFAULT_CATALOG, ECHO_SPEC)), handlers={"echo": EchoHandler(upstream)},
                         **options)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.runtime is not None and app.runtime.gateway.link_state is not None
                        and app.runtime.gateway.link_state.status == "connected")
            yield app, pilot
    if sandbox is not None:
        assert sandbox.coolify.violations == [], "requests the real Coolify would not accept"


async def agent_token(app: ConsoleApp) -> str:
    assert app.runtime is not None
    gateway = app.runtime.gateway
    _, token = await create_agent(gateway.store, gateway.hasher, "deployer", "test")
    await gateway.authenticator.refresh()
    return token


async def agent_call(app: ConsoleApp, token: str, operation: str = "echo", args: Any = None, service: str = "echo",
                     **options: Any) -> httpx.Response:
    assert app.runtime is not None
    body = execute(service, operation, ["hi"] if args is None else args)
    if options:
        body["params"]["options"] = options
    async with httpx.AsyncClient(base_url=app.runtime.gateway_url or "", timeout=30,
                                 headers={"authorization": f"Bearer {token}"}) as client:
        return await client.post("/mcp/rpc", json=body)


async def held_call(app: ConsoleApp, pilot: Pilot[None], token: str, operation: str = "echo",
                    args: Any = None) -> asyncio.Task[httpx.Response]:
    """An agent's call held for approval (waitForApproval 20 s), once its modal is up."""
    held = asyncio.create_task(agent_call(app, token, operation, args, waitForApproval=20))
    await until(pilot, lambda: modal_open(app))
    return held


def modal_open(app: ConsoleApp) -> bool:
    return isinstance(app.screen, PermissionRequestModal)


async def test_a_request_pops_up_and_a_approves_it_so_the_held_call_goes_through(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = await held_call(app, pilot, token)
        assert isinstance(app.screen, PermissionRequestModal)
        assert app.screen.request.service_name == "echo" and app.screen.request.operation == "echo"
        await pilot.press("a")
        response = await asyncio.wait_for(held, 10)
        await until(pilot, lambda: not app.state.pending)
    assert response.status_code == 200


async def test_d_denies_and_the_agent_hears_denied(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = await held_call(app, pilot, token)
        await pilot.press("d")
        await pilot.pause(0.1)
        assert not held.done()  # d opens the reason field; enter denies
        await pilot.press(*"not today", "enter")
        error = (await asyncio.wait_for(held, 10)).json()["error"]
    assert error["code"] == -32004 and error["data"]["status"] == "denied"
    assert error["message"].endswith("not today")


async def test_a_destructive_request_needs_a_second_distinct_key(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = await held_call(app, pilot, token, "wipe", ["disk-1"])
        await pilot.press("a")
        await pilot.pause(0.2)
        assert modal_open(app) and not held.done()  # one key is not enough
        await pilot.press("x")  # any other key disarms
        await pilot.press("y")
        await pilot.pause(0.2)
        assert modal_open(app) and not held.done()
        await pilot.press("a", "y")
        response = await asyncio.wait_for(held, 10)
    assert response.status_code == 200


async def test_escape_leaves_the_request_queued_and_r_brings_it_back(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)
        await until(pilot, lambda: modal_open(app))
        await pilot.press("escape")
        await until(pilot, lambda: not modal_open(app))
        assert len(app.state.pending) == 1
        assert ("1 pending", 0) in app.status
        await pilot.press("r")
        await until(pilot, lambda: modal_open(app))


async def test_while_snoozed_the_notification_names_the_request_that_just_came(tmp_path: Path) -> None:
    """It named the oldest pending request, whoever had just asked."""
    async with console(tmp_path) as (app, pilot):
        await agent_call(app, await agent_token(app), "echo")
        await until(pilot, lambda: modal_open(app))
        await pilot.press("escape")  # later: new ones wait a while for r
        await until(pilot, lambda: not modal_open(app))
        await agent_call(app, await agent_token(app), "wipe", ["disk-1"])
        await until(pilot, lambda: any("echo.wipe" in str(n.message) for n in app._notifications))
    assert not [n for n in app._notifications if "echo.echo" in str(n.message)]


async def test_q_and_help_work_over_a_request_as_everywhere(tmp_path: Path) -> None:
    """A modal's bindings stop at the modal: q did nothing over a permission request, nor ?."""
    async with console(tmp_path) as (app, pilot):
        await agent_call(app, await agent_token(app))
        await until(pilot, lambda: modal_open(app))
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("escape")
        await until(pilot, lambda: modal_open(app))
        await pilot.press("q")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        asked = str(app.screen.query_one("#confirm-question").render())
        await pilot.press("n")
        await until(pilot, lambda: modal_open(app))
    assert asked.startswith("Stop the gateway")


async def test_keys_pressed_as_a_request_comes_up_do_not_decide_it(tmp_path: Path) -> None:
    """After a decision the next request opens at once: a second `a`, or a key typed for what was on screen,
    approved a request nobody had read."""
    async with console(tmp_path, settings={"console": {"decision_guard_seconds": 0.5}}) as (app, pilot):
        first, second = await agent_token(app), await agent_token(app)
        held = [asyncio.create_task(agent_call(app, token, waitForApproval=20)) for token in (first, second)]
        await until(pilot, lambda: modal_open(app) and len(app.state.pending) == 2)
        await pilot.pause(0.6)
        first_shown = app.screen
        await pilot.press("a")  # read, and approved
        await until(pilot, lambda: modal_open(app) and app.screen is not first_shown)
        await pilot.press("a")  # as the next one comes up: a key meant for the last
        await pilot.pause(0.1)
        still_pending = len(app.state.pending)
        await pilot.pause(0.5)
        await pilot.press("a")  # read now
        answers = await asyncio.wait_for(asyncio.gather(*held), 10)
    assert still_pending == 1 and [answer.status_code for answer in answers] == [200, 200]


async def test_a_request_decided_elsewhere_closes_its_modal(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        request_id = (await agent_call(app, token)).json()["error"]["data"]["requestId"]
        await until(pilot, lambda: modal_open(app))
        assert app.runtime is not None and app.runtime.gateway.orchestrator is not None
        from gateway_core.orchestrator.models import PermissionRespondBody

        await app.runtime.gateway.orchestrator.respond(
            PermissionRespondBody(request_id=request_id, approved=True, decided_by="operator:bob"))
        await until(pilot, lambda: not modal_open(app))
    assert not app.state.pending


async def test_read_only_mode_shows_requests_but_never_offers_to_decide(tmp_path: Path) -> None:
    async with console(tmp_path, read_only=True) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)
        await until(pilot, lambda: len(app.state.pending) == 1)
        await pilot.press("r", "a")
        await pilot.pause(0.3)
        assert not modal_open(app) and len(app.state.pending) == 1


async def test_a_call_that_was_not_denied_does_not_read_denied(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)  # filed, not held: it is pending, and says so
        calls = app.dashboard.query_one("#calls", LinesTable)
        await until(pilot, lambda: calls.row_count >= 1)  # drawn under the modal the request opened
        assert modal_open(app)
        assert calls.rows[0].cells[5] == "pending" and calls.rows[0].tone == "warning"


async def test_calls_appear_in_the_live_table(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token, "nope")
        calls = app.dashboard.query_one("#calls", LinesTable)
        await until(pilot, lambda: calls.row_count >= 1)
        assert app.state.calls[0].error_code == -32002
        async with httpx.AsyncClient(base_url=app.runtime.gateway_url or "",  # type: ignore[union-attr]
                                     headers={"authorization": f"Bearer {token}"}) as client:
            await client.post("/mcp/execute", json={"command": "/mcp-echo nope"})
        await until(pilot, lambda: calls.row_count == 2)
        assert [row.cells[2] for row in calls.rows] == ["/", "rpc"]  # which way each came in, newest first
        services = app.dashboard.query_one("#services", LinesTable)
        await until(pilot, lambda: (services.row("echo") or ())[4:6] == ("2", "2"))  # calls, errors
        # The configured service a row of its own; the ten not configured one line, so the calls get the rows.
        assert services.row_count == 2
        folded = services.row("not-configured")
        assert folded is not None and "postgres" in folded[0] and "magicui" in folded[0] and "echo" not in folded[0]


async def test_t_then_8_then_s_approves_the_service_for_eight_hours(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = await held_call(app, pilot, token)
        await pilot.press("t", "8", "s")
        assert (await asyncio.wait_for(held, 10)).status_code == 200
        assert app.runtime is not None
        grants = await app.runtime.gateway.store.list_grants()
    assert len(grants) == 1 and grants[0].operation is None and grants[0].expires_at is not None
    assert abs(grants[0].expires_at - grants[0].granted_at - 8 * 3600) < 5
    assert grants[0].granted_by == "operator:alice"


async def test_a_custom_time_limit_is_typed_and_applies_to_the_operation(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = await held_call(app, pilot, token)
        await pilot.press("t", "c", *"90m", "enter")
        await pilot.press("a")  # a one-time approval takes no time limit: nothing happens
        await pilot.pause(0.1)
        assert modal_open(app)
        await pilot.press("o")
        assert (await asyncio.wait_for(held, 10)).status_code == 200
        assert app.runtime is not None
        grants = await app.runtime.gateway.store.list_grants()
    assert grants[0].operation == "echo" and grants[0].expires_at is not None
    assert abs(grants[0].expires_at - grants[0].granted_at - 5400) < 5


async def test_slash_filters_the_calls_table(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        assert app.runtime is not None
        await app.runtime.gateway.store.add_grant((await app.runtime.gateway.store.list_agents())[0].id, "echo",
                                                  None, None, "test")
        await agent_call(app, token)
        await agent_call(app, token, "nope")
        calls = app.dashboard.query_one("#calls", LinesTable)
        await until(pilot, lambda: calls.row_count == 2)
        await pilot.press("slash", *"nope")
        await until(pilot, lambda: calls.row_count == 1)
        assert calls.rows[0].cells[4] == "nope"
        await pilot.press("escape")
        await until(pilot, lambda: calls.row_count == 2)
        # What is on screen matches: the status as shown (ok), and the agent by the name shown.
        await pilot.press("slash", *" ok")
        await until(pilot, lambda: calls.row_count == 1 and calls.rows[0].cells[5] == "ok")
        await pilot.press("escape")
        app._load_agent_names()
        await until(pilot, lambda: bool(app.state.agent_names))
        await pilot.press("slash", *"deployer")
        await until(pilot, lambda: calls.row_count == 2)
        assert all(row.cells[1] == "deployer" for row in calls.rows)


async def test_at_120_columns_the_calls_table_shows_agents_and_operations_whole(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        assert app.runtime is not None
        gateway = app.runtime.gateway
        agent, token = await create_agent(gateway.store, gateway.hasher, "sandbox-deployer-2", "test")
        await gateway.authenticator.refresh()
        await gateway.store.add_grant(agent.id, "echo", None, None, "test")
        await agent_call(app, token, "echo-everything-you-are-sent")
        app._load_agent_names()
        calls = app.dashboard.query_one("#calls", LinesTable)
        await until(pilot, lambda: calls.row_count == 1 and calls.rows[0].cells[1] == "sandbox-deployer-2")
        line = "".join(segment.text for segment in calls.render_line(1))
    assert "sandbox-deployer-2" in line and "echo-everything-you-are-sent" in line, line


async def test_the_permissions_screen_lists_and_revokes_grants_after_confirmation(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)  # a pending request
        await until(pilot, lambda: modal_open(app))
        await pilot.press("escape")
        assert app.runtime is not None
        store = app.runtime.gateway.store
        agent_id = (await store.list_agents())[0].id
        grant = await store.add_grant(agent_id, "coolify", "list-applications", None, "test")
        await pilot.press("p")
        screen = app.permissions_screen
        await until(pilot, lambda: app.screen is screen)
        grants, pending = screen.query_one("#grants", LinesTable), screen.query_one("#pending", LinesTable)
        await until(pilot, lambda: grants.row_count == 1 and pending.row_count == 1)
        # On the pending requests r reviews them, whatever grant the other table's cursor is on.
        assert screen.focused is pending
        await pilot.press("r")
        await until(pilot, lambda: modal_open(app))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        assert [g.id for g in await store.list_grants()] == [grant.id]
        grants.focus()
        await pilot.press("enter")  # the grant, whole (the footer offers enter on every table)
        await until(pilot, lambda: isinstance(app.screen, TextView))
        shown = app.screen
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        assert isinstance(shown, TextView) and shown.title_text == f"Grant {grant.id}"
        assert '"operations": [\n    "list-applications"\n  ]' in shown.text and '"agent": "deployer"' in shown.text
        await pilot.press("r")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        await pilot.press("n")  # no: nothing changes
        await pilot.pause(0.2)
        assert [g.id for g in await store.list_grants()] == [grant.id]
        await pilot.press("r", "y")
        await until(pilot, lambda: grants.row_count == 0)
        assert await store.list_grants() == []
        audit = await store.list_audit()
    revoked = [event for event in audit if event.action == "grant.revoked"]
    assert revoked and revoked[0].actor == "operator:alice"


async def test_enter_on_a_pending_request_opens_its_modal(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)
        await until(pilot, lambda: modal_open(app))
        await pilot.press("escape", "p")
        await until(pilot, lambda: app.screen is app.permissions_screen)
        pending = app.permissions_screen.query_one("#pending", LinesTable)
        await until(pilot, lambda: pending.row_count == 1)
        pending.focus()
        await pilot.press("enter")
        await until(pilot, lambda: modal_open(app))
        await pilot.press("a")
        await until(pilot, lambda: pending.row_count == 0)


async def test_a_pending_requests_ages_count_on_while_the_screen_is_shown(tmp_path: Path) -> None:
    """They were drawn when a permission event came, and then stood still: 'asked 42 s' minutes later."""
    clock = FrozenClock(time.time())
    async with console(tmp_path, clock=clock) as (app, pilot):
        await agent_call(app, await agent_token(app))
        await until(pilot, lambda: modal_open(app))
        await pilot.press("escape", "p")
        await until(pilot, lambda: app.screen is app.permissions_screen)
        pending = app.permissions_screen.query_one("#pending", LinesTable)
        await until(pilot, lambda: pending.row_count == 1)
        first = pending.rows[0].cells[4:]
        clock.advance(125)
        await until(pilot, lambda: pending.rows[0].cells[4:] != first, within=3)
        later = pending.rows[0].cells[4:]
    assert first[0].endswith(" s") and later[0] == "2 min", (first, later)


async def test_history_shows_who_decided_and_why(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)
        await until(pilot, lambda: modal_open(app))
        await pilot.press("d", *"too risky", "enter", "p")
        await until(pilot, lambda: app.screen is app.permissions_screen)
        history = app.permissions_screen.query_one("#history", LinesTable)
        await until(pilot, lambda: history.row_count == 1)
        row = history.rows[0].cells
    assert row[4:] == ("denied", "-", "-", "operator:alice", "too risky")  # no scope, nothing granted


async def test_history_says_how_long_a_time_limited_approval_grants(tmp_path: Path) -> None:
    """The history's entries never carried their grant's end: an hour's approval read "no limit"."""
    async with console(tmp_path) as (app, pilot):
        held = await held_call(app, pilot, await agent_token(app))
        await pilot.press("t", "1", "o")
        assert (await asyncio.wait_for(held, 10)).status_code == 200
        await pilot.press("p")
        await until(pilot, lambda: app.screen is app.permissions_screen)
        history = app.permissions_screen.query_one("#history", LinesTable)
        await until(pilot, lambda: history.row_count == 1)
        row = history.rows[0].cells
        assert app.runtime is not None  # the spec's history holds revocations too: the grant it made, revoked
        [grant] = await app.runtime.gateway.store.list_grants()
        await app.runtime.gateway.store.revoke_grant(grant.id, "test")
        await pilot.press("f5")
        await until(pilot, lambda: history.rows[0].cells[6] == "revoked")
    assert row[4:6] == ("approved", "operation") and row[6] in ("1 h 0 min", "59 min"), row


async def test_help_lists_every_key_by_its_id(tmp_path: Path) -> None:
    from console.keymap import KNOWN_IDS

    async with console(tmp_path) as (app, pilot):
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        text = str(app.screen.query_one("#help-text").render())
        assert all(key_id in text for key_id in KNOWN_IDS)
        # Every key, the modal's time limits, enter on tables and esc in a filter included.
        for shown in ("open the row", "one hour", "eight hours", "clear the filter", "whole request"):
            assert shown in text
        # A `[` key's description starts in the column all others do (its escape took a column of padding).
        bracket = next(line for line in text.splitlines() if line.startswith("  ["))
        assert bracket[14] == " " and bracket[15] != " ", bracket
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.dashboard)


async def test_keys_can_be_remapped_in_the_config(tmp_path: Path) -> None:
    async with console(tmp_path, settings={"console": {"keys": {"audit": "ctrl+u"}}}) as (app, pilot):
        await pilot.press("u")
        await pilot.pause(0.1)
        assert app.screen is app.dashboard
        await pilot.press("ctrl+u")
        await until(pilot, lambda: app.screen is app.audit_screen)


def test_an_unknown_key_id_in_the_config_is_refused(tmp_path: Path) -> None:
    from gateway_core.config import ConfigError

    settings = load_settings(None, store={"path": tmp_path / "x.db"}, console={"keys": {"aprove": "x"}})
    with pytest.raises(ConfigError, match="aprove"):
        ConsoleApp(settings)


async def test_the_audit_screen_shows_and_filters_the_log(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = await held_call(app, pilot, token)
        await pilot.press("a")
        assert (await asyncio.wait_for(held, 10)).status_code == 200
        await pilot.press("u")
        await until(pilot, lambda: app.screen is app.audit_screen)
        table = app.audit_screen.query_one("#audit", LinesTable)
        await until(pilot, lambda: table.row_count >= 3)
        everything = table.row_count
        audit_actions = [row.cells[2] for row in table.rows]
        assert "grant.used" in audit_actions and "grant.revoked" not in audit_actions  # the once-grant, spent
        # One entry per decision: neither the grant it added nor the gateway's note that it saw it.
        assert audit_actions.count("permission.approved") == 1 and "permission.decision_seen" not in audit_actions
        assert "grant.added" not in audit_actions
        assert any(row.cells[1] == "agent:deployer" for row in table.rows)  # agents by name
        await pilot.press("slash", *"approved")
        await until(pilot, lambda: 0 < table.row_count < everything)
        assert all("approved" in " ".join(row.cells) for row in table.rows)
        await pilot.press("enter", "enter")  # out of the filter, then the chosen entry, whole
        await until(pilot, lambda: type(app.screen).__name__ == "TextView")
        assert '"action": "permission.approved"' in app.screen.text  # type: ignore[attr-defined]


async def test_an_agent_added_with_the_cli_is_let_in_within_two_seconds(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        added = await mcp_console("agents", "add", "from-cli", "--json", "--db", tmp_path / "console.db")
        token = json.loads(added.stdout)["token"]
        started = time.monotonic()
        while (response := await agent_call(app, token)).status_code == 401:
            assert time.monotonic() - started < 2.0, response.text
            await pilot.pause(0.1)
    assert response.json()["error"]["code"] == -32004  # known now, and asking permission like any agent


# -- Coolify by hand, against the sandbox's Coolify-compatible server -----------------------------------


async def operations_of(app: ConsoleApp, pilot: Pilot[None], service: str, listing: str | None = None) -> Any:
    """The Operations screen (`c`) showing `service`, once that service lists the operation `listing` (an MCP
    server's tools come when its child has started)."""
    from tests.test_mcp_upstreams import STARTS

    if listing is not None:
        await until(pilot, lambda: app.runtime is not None
                    and listing in app.runtime.gateway.services[service].operations, STARTS)
    await pilot.press("c")
    operations = app.operations_screen
    await until(pilot, lambda: app.screen is operations and operations.service is not None)
    operations.show_service(service)
    return operations


async def choose_operation(app: ConsoleApp, pilot: Pilot[None], name: str) -> Any:
    # The sandbox configures five services: Coolify is not the first listed.
    operations = await operations_of(app, pilot, "coolify")
    assert operations.service is not None and operations.service.name == "coolify" and operations.service.configured
    await operations.choose(name)  # what enter on the operation list does
    return operations


async def test_the_operations_screen_shows_a_tool_an_upstream_lists_while_it_is_open(tmp_path: Path) -> None:
    from textual.widgets import OptionList

    from tests.test_mcp_upstreams import STARTS, stdio

    async with console(tmp_path, settings={"mcp_servers": stdio()}) as (app, pilot):
        operations = await operations_of(app, pilot, "testsrv", "add")
        listed = operations.query_one("#operations", OptionList)

        def shown() -> set[str | None]:
            return {listed.get_option_at_index(index).id for index in range(listed.option_count)}

        before = shown()
        assert app.state.gateway is not None
        await app.state.gateway.run("testsrv", "grow", {"name": "sprout"})
        await until(pilot, lambda: "sprout" in shown(), STARTS)
    assert "add" in before and "sprout" not in before


async def pick(pilot: Pilot[None], screen: Any, field: str, value: str) -> None:
    from textual.widgets import Select

    picker, form = screen.query_one(f"#field-{field}", Select), screen.query_one("#form")
    await until(pilot, lambda: value in form.picked_names.get(field, {}))
    picker.value = value


async def run_until_confirmation(app: ConsoleApp, pilot: Pilot[None], operation: str, uuid: str) -> Any:
    """Chooses the operation, picks the resource, presses ctrl+r: the confirmation is up."""
    screen = await choose_operation(app, pilot, operation)
    await pick(pilot, screen, "uuid", uuid)
    await pilot.press("ctrl+r")
    await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
    return screen


async def test_restart_from_the_coolify_screen_goes_through_the_gateway_as_the_operator(tmp_path: Path) -> None:
    sandbox = Sandbox(agents=0)
    async with console(tmp_path, sandbox=sandbox) as (app, pilot):
        screen = await run_until_confirmation(app, pilot, "restart-application", "app1")
        await pilot.press("y")
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "success" in str(status.render()))
        assert sandbox.coolify.requests_to("POST", "/applications/app1/restart")
        await until(pilot, lambda: any(c.operation == "restart-application" for c in app.state.calls))
        call = next(c for c in app.state.calls if c.operation == "restart-application")
        assert call.agent_id == "operator:alice" and call.status == "success" and call.cost_usd > 0
        assert call.via == "console" and call_row(call, app.state).cells[2] == "op"  # as the calls table shows it
        assert app.runtime is not None
        await app.runtime.gateway.recorder.flush()
        audit = await app.runtime.gateway.store.list_audit()
    assert any(e.actor == "operator:alice" and e.action == "operator.call" and e.subject == call.id for e in audit)


async def test_a_destructive_operation_needs_the_target_name_typed(tmp_path: Path) -> None:
    sandbox = Sandbox(agents=0)
    async with console(tmp_path, sandbox=sandbox) as (app, pilot):
        screen = await run_until_confirmation(app, pilot, "stop-application", "app1")
        # Two applications may share a name: the question names it and gives its uuid.
        assert "web (app1)" in str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y", "enter")  # y is not the name: nothing happens
        await pilot.pause(0.2)
        assert type(app.screen).__name__ == "ConfirmModal"
        app.screen.query_one("Input").value = ""
        await pilot.press(*"web", "enter")
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "success" in str(status.render()))
    assert sandbox.coolify.applications["app1"]["status"].startswith("exited")


async def test_the_form_is_checked_against_the_operation_before_anything_is_sent(tmp_path: Path) -> None:
    sandbox = Sandbox(agents=0)
    async with console(tmp_path, sandbox=sandbox) as (app, pilot):
        screen = await choose_operation(app, pilot, "create-project")
        await pilot.press("ctrl+r")  # the name, required, is empty
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "name: Field required" in str(status.render()))
        assert screen.query_one("#field-name").has_class("-invalid")
        assert type(app.screen).__name__ != "ConfirmModal"
        assert not any(call.operation == "create-project" for call in app.state.calls)
        assert not sandbox.coolify.requests_to("POST", "/projects")


async def test_errors_show_as_the_gateway_gives_them(tmp_path: Path) -> None:
    async with console(tmp_path, sandbox=Sandbox(agents=0)) as (app, pilot):
        screen = await choose_operation(app, pilot, "get-deployment")
        screen.query_one("#field-uuid").value = "no-such-deployment"
        await pilot.press("ctrl+r")
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "RESOURCE_NOT_FOUND" in str(status.render()))
        assert "-32007" in str(status.render())
        # A value the operation's own model refuses never leaves the console: the field says why.
        screen = await choose_operation(app, pilot, "get-application-logs")
        screen.query_one("#field-lines").value = "0"
        await pick(pilot, screen, "uuid", "app2")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "lines: Input should be greater than or equal to 1" in str(status.render()))
        assert screen.query_one("#field-lines").has_class("-invalid")


async def test_read_only_refuses_writes_in_the_gateway_but_allows_reads(tmp_path: Path) -> None:
    sandbox = Sandbox(agents=0)
    async with console(tmp_path, read_only=True, sandbox=sandbox) as (app, pilot):
        screen = await choose_operation(app, pilot, "restart-application")
        await pick(pilot, screen, "uuid", "app1")  # the picker's list call is a read: allowed
        await pilot.press("ctrl+r")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        await pilot.press("y")
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "PERMISSION_DENIED" in str(status.render()))
        assert "read-only" in str(status.render())
    assert not sandbox.coolify.requests_to("POST", "/applications/app1/restart")


async def test_the_command_palette_finds_a_coolify_operation(tmp_path: Path) -> None:
    async with console(tmp_path, sandbox=Sandbox(agents=0)) as (app, pilot):
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"coolify restart-app")
        await pilot.pause(0.5)
        await pilot.press("enter")
        operations = app.operations_screen
        await until(pilot, lambda: app.screen is operations and operations.selected is not None)
        assert operations.selected.name == "restart-application"


async def test_the_palette_finds_a_pending_request_by_review_and_lists_ours_first(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)
        await until(pilot, lambda: modal_open(app))
        await pilot.press("escape")
        await until(pilot, lambda: not modal_open(app))
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        palette = app.screen
        await pilot.press(*"approve deployer")
        await pilot.pause(0.5)
        shown = [str(option.prompt) for option in palette.query_one("CommandList").options]  # type: ignore[attr-defined]
        assert shown and shown[0].startswith("Review the pending request: approve or deny deployer → echo.echo")
        await pilot.press("enter")
        await until(pilot, lambda: modal_open(app))


async def test_the_sandbox_agents_call_and_one_asks_permission(tmp_path: Path) -> None:
    sandbox = Sandbox(agents=3, calls_per_second=30)
    async with console(tmp_path, sandbox=sandbox) as (app, pilot):
        await until(pilot, lambda: any(c.status == "success" and c.service == "coolify" for c in app.state.calls))
        await until(pilot, lambda: modal_open(app))
        assert app.screen.request.agent_name.startswith("sandbox-")  # type: ignore[attr-defined]
        assert app.runtime is not None
        assert app.runtime.gateway.service_status("coolify") == "healthy"


async def test_no_gateway_attaches_to_an_orchestrator_and_decides_its_requests(tmp_path: Path) -> None:
    from tests.servers import run_linked

    async with run_linked(tmp_path / "main.db") as linked:
        _, token = await linked.add_agent()
        settings = load_settings(None, store={"path": tmp_path / "viewer.db"},
                                 orchestrator_url=linked.orchestrator_url,
                                 orchestrator_token=linked.operator_token, console={"decision_guard_seconds": 0})
        app = ConsoleApp(settings, serve_gateway=False, login="bob")
        async with app.run_test(size=(120, 40)) as pilot, httpx.AsyncClient(base_url=linked.url, timeout=30,
                                     headers={"authorization": f"Bearer {token}"}) as client:
            held = asyncio.create_task(client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]) | {
                "params": {"service": "echo", "operation": "echo", "args": ["hi"],
                           "options": {"waitForApproval": 20}}}))
            await until(pilot, lambda: modal_open(app))
            assert ("no gateway here: calls, health and cost are not shown", 3) in app.status
            await pilot.press("a")
            assert (await asyncio.wait_for(held, 10)).status_code == 200


async def test_a_taken_gateway_port_ends_the_console_with_a_clear_message(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = load_settings(None, store={"path": tmp_path / "c.db"}, server={"port": taken.getsockname()[1]})
        app = ConsoleApp(settings, orchestrator_port=0)
        messages: list[Any] = []
        exit_app = app.exit
        app.exit = lambda *args, **kwargs: (messages.append(kwargs.get("message")), exit_app(*args, **kwargs))  # type: ignore[method-assign]
        async with app.run_test() as pilot:
            await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1
    # Which port, and which flag picks another: two are bound, and the message did not say which was taken.
    port = settings.server.port
    assert messages and f"cannot listen on 127.0.0.1:{port}: " in str(messages[0])
    assert "--gateway-port names another port" in str(messages[0])
    # The log keeps it too: over SSH the terminal that would show it after the exit may be gone.
    assert any("cannot listen on 127.0.0.1" in record.getMessage() for record in caplog.records
               if record.name == "console.app" and record.levelname == "ERROR")


async def test_a_grant_added_with_the_cli_counts_within_two_seconds(tmp_path: Path) -> None:
    async with console(tmp_path, sandbox=Sandbox(agents=0)) as (app, pilot):
        added = await mcp_console("agents", "add", "from-cli", "--json", "--db", tmp_path / "console.db")
        agent = json.loads(added.stdout)
        assert app.runtime is not None
        await app.runtime.gateway.authenticator.refresh()
        refused = await agent_call(app, agent["token"], "list-servers", [], "coolify")
        assert refused.json()["error"]["code"] == -32004  # no grant yet: it is asked for
        await mcp_console("grants", "add", agent["id"], "coolify", "--db", tmp_path / "console.db")
        started = time.monotonic()
        while "error" in (response := await agent_call(app, agent["token"], "list-servers", [], "coolify")).json():
            assert time.monotonic() - started < 2.0, response.text
            await pilot.pause(0.1)



async def test_the_modal_counts_requests_that_arrive_while_it_is_open(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        first, second = await agent_token(app), await agent_token(app)
        await agent_call(app, first)
        await until(pilot, lambda: modal_open(app))
        await agent_call(app, second)
        await until(pilot, lambda: len(app.state.pending) == 2)
        title = app.screen.query_one("#permission-title")
        await until(pilot, lambda: "1 of 2" in str(title.render()))
        await pilot.press("d", "enter")  # the second comes up next, alone now
        await until(pilot, lambda: modal_open(app) and "1 of 1" in str(app.screen.query_one("#permission-title")
                                                                       .render()))


def modals(app: ConsoleApp) -> int:
    return sum(isinstance(screen, PermissionRequestModal) for screen in app.screen_stack)


async def test_requests_pending_at_start_open_one_modal_at_a_time(tmp_path: Path) -> None:
    """Each request pending at start started a modal of its own: seven stacked modals froze the console within
    seconds and ended it (a RecursionError in Textual, its report then failing too)."""
    async with console(tmp_path) as (app, pilot):
        for _ in range(3):
            await agent_call(app, await agent_token(app))
        await until(pilot, lambda: len(app.state.pending) == 3)
    async with console(tmp_path) as (app, pilot):
        await until(pilot, lambda: modal_open(app) and len(app.state.pending) == 3)
        await pilot.pause(0.3)
        at_start = modals(app)
        await pilot.press("escape", "r", "r")  # r twice, quickly: still one
        await until(pilot, lambda: modal_open(app))
        await pilot.pause(0.3)
        after_r_r = modals(app)
        await pilot.press("d", "enter")
        await until(pilot, lambda: modal_open(app) and len(app.state.pending) == 2)
        await pilot.pause(0.3)
        after_deciding = modals(app)
    assert (at_start, after_r_r, after_deciding) == (1, 1, 1)


async def test_a_decision_the_orchestrator_would_refuse_is_not_lost_without_a_word(tmp_path: Path) -> None:
    """A limit over ten years or a reason over 2,000 characters closed the modal and dropped the decision: the
    request stayed pending, and nothing said why."""
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = await held_call(app, pilot, token)
        await pilot.press("t", "c", *"99999d", "enter")
        await pilot.pause(0.1)
        hint = str(app.screen.query_one("#permission-hint").render())
        assert modal_open(app) and "over ten years" in hint, hint
        await pilot.press("escape", "d")
        field = app.screen.query_one("#permission-input", Input)
        field.insert_text_at_cursor("x" * 2500)  # pasted
        await pilot.press("enter")
        await pilot.pause(0.1)
        hint = str(app.screen.query_one("#permission-hint").render())
        assert modal_open(app) and "2,500 characters, over 2,000" in hint and field.value == "x" * 2500, hint
        field.value = "x" * 2000
        await pilot.press("enter")
        error = (await asyncio.wait_for(held, 10)).json()["error"]
    assert error["code"] == -32004 and error["data"]["status"] == "denied" and error["message"].endswith("x" * 2000)


async def test_secrets_coolify_hands_back_are_masked_on_screen(tmp_path: Path) -> None:
    async with console(tmp_path, sandbox=Sandbox(agents=0)) as (app, pilot):
        screen = await choose_operation(app, pilot, "get-database")
        await pick(pilot, screen, "uuid", "db1")
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "internal_db_url" in screen.result_text)
        shown = screen.result_text
    assert "postgres://postgres:********@db1:5432" in shown and "secret" not in shown


def test_redaction_masks_secret_keys_and_url_credentials_but_keeps_names() -> None:
    from gateway_core.redaction import redacted

    assert redacted({"envs": [{"key": "DATABASE_URL", "value": "x"}], "api_token": "t0k", "server_uuid": "s1",
                     "url": "redis://default:hunter2@cache:6379/0", "password": None}) == {
        "envs": [{"key": "DATABASE_URL", "value": "x"}], "api_token": "********", "server_uuid": "s1",
        "url": "redis://default:********@cache:6379/0", "password": None}


async def test_with_the_external_orchestrator_requests_are_decided_and_the_screen_says_what_it_lacks(
        tmp_path: Path) -> None:
    from tests.external_orchestrator import ExternalOrchestrator

    external = ExternalOrchestrator(clock=FrozenClock(1_800_000_000.0))  # every request filed in the same second
    async with serve_asgi(external.app()) as external_url, \
            console(tmp_path, settings={"orchestrator_url": external_url}) as (app, pilot):
        token = await agent_token(app)
        assert app.runtime is not None
        agent_id = (await app.runtime.gateway.store.list_agents())[0].id
        external.add_agent(agent_id, "deployer")
        await until(pilot, lambda: any("lists nothing" in text for text, _ in app.status))  # it says so up top
        held = await held_call(app, pilot, token)
        other = asyncio.create_task(agent_call(app, token, "wipe", ["x"]))  # the same id: both must show
        await until(pilot, lambda: len(app.state.pending) == 2)
        assert len(set(external.filed)) == 1
        modal = app.screen
        assert isinstance(modal, PermissionRequestModal)
        # It grants only the whole service, for ever: nothing else is offered, and the modal says why.
        assert "grants only service" in str(modal.query_one("#permission-limits").render())
        await pilot.press("a", "o", "t")
        await pilot.pause(0.2)
        assert modal_open(app) and app.screen is modal and modal.stage == "keys"
        await pilot.press("s")
        assert (await asyncio.wait_for(held, 10)).status_code == 200
        await other
        await until(pilot, lambda: not app.state.pending)  # its decision names no operation: it settles both
        await pilot.press("p")
        note = app.permissions_screen.query_one("#permissions-note")
        await until(pilot, lambda: "lists neither grants" in str(note.render()))
        await app.runtime.gateway.recorder.flush()
        audit = await app.runtime.gateway.store.list_audit()
    assert external.agents[agent_id]["metadata"]["allowed_mcps"] == ["echo"]
    approved = [event for event in audit if event.action == "permission.approved"]
    assert approved and approved[0].actor == "operator:alice"  # the gateway audits what the orchestrator does not


async def test_every_argument_can_be_read_before_deciding_and_the_times_count_live(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from gateway_core.clock import FrozenClock
    from gateway_core.events import PermissionEvent
    from gateway_core.orchestrator.models import PermissionRequestEvent

    now = 1_800_000_000.0
    clock = FrozenClock(now)
    async with console(tmp_path, clock=clock) as (app, pilot):
        assert app.runtime is not None
        preview = {f"field_{number:02}": f"value {number}" for number in range(14)}  # more than the modal shows
        app.runtime.gateway.events.publish(PermissionEvent(PermissionRequestEvent(
            request_id="perm_req_many", agent_id="agent-7", agent_name="builder", service_name="echo",
            operation="echo", risk="write", reason="Agent agent-7 attempted to use echo for operation: echo",
            params_preview=preview, timestamp=datetime.fromtimestamp(now - 5, UTC),
            expires_at=datetime.fromtimestamp(now + 600, UTC))))
        await until(pilot, lambda: modal_open(app))
        modal = app.screen
        assert isinstance(modal, PermissionRequestModal)
        more, timing = modal.query_one("#permission-more"), modal.query_one("#permission-timing")
        await until(pilot, lambda: "more lines below" in str(more.render()))
        assert "asked 5 s ago, expires in 10 min" in str(timing.render())
        assert "builder attempted to use echo" in str(modal.query_one("#permission-facts").render())
        clock.advance(30)  # the modal stays open: its times move on
        await until(pilot, lambda: "asked 35 s ago" in str(timing.render()))
        await pilot.press("f")
        await until(pilot, lambda: type(app.screen).__name__ == "TextView")
        whole = app.screen.text  # type: ignore[attr-defined]
        assert all(f'"field_{number:02}": "value {number}"' in whole for number in range(14))
        await pilot.press("escape")
        await until(pilot, lambda: modal_open(app))


# -- text from elsewhere is shown as text ---------------------------------------------------------------------

# What agents, orchestrators and MCP servers send, made to be misread as Textual markup: a closing tag with
# nothing to close (a markup error, which ended the console and the gateway it runs), an action link, a lone
# bracket pair the markup swallowed, a backslash.
MARKUP_BAIT = '[/] [@click=app.quit]approve[/] key [ and ] "[1,2" a\\'
# And what a terminal would obey (clear the screen, retitle the window), with a line of its own after it.
CONTROL_BAIT = "\x1b[2J\x1b]0;owned\x07\nrisk       read"
CONTROL_SHOWN = "\\x1b[2J\\x1b]0;owned\\x07\\nrisk       read"


async def test_an_agents_name_and_arguments_show_as_text_in_the_request(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        assert app.runtime is not None
        gateway = app.runtime.gateway
        _, token = await create_agent(gateway.store, gateway.hasher, MARKUP_BAIT + CONTROL_BAIT, "test")
        await gateway.authenticator.refresh()
        held = await held_call(app, pilot, token, "echo", {"message": MARKUP_BAIT + CONTROL_BAIT})
        facts = str(app.screen.query_one("#permission-facts").render())
        arguments = str(app.screen.query_one("#permission-arguments-text").render())
        await pilot.press("a")
        response = await asyncio.wait_for(held, 10)
    name = MARKUP_BAIT + CONTROL_SHOWN
    assert f"agent      {name} (" in facts and f"reason     Agent {name} attempted" in facts
    assert len(facts.splitlines()) == 5 and "\x1b" not in facts  # the name drew no line of its own
    assert json.dumps(printable(MARKUP_BAIT + CONTROL_BAIT)) in arguments  # the gateway's preview writes it out
    assert response.json()["result"]["data"] == {"echo": MARKUP_BAIT + CONTROL_BAIT}


async def test_an_mcp_servers_descriptions_and_errors_show_as_text(tmp_path: Path) -> None:
    from textual.command import CommandPalette

    from tests.test_mcp_upstreams import STARTS, stdio

    async with console(tmp_path, settings={"mcp_servers": stdio()}) as (app, pilot):
        await until(pilot, lambda: app.runtime is not None
                    and "refuse" in app.runtime.gateway.services["testsrv"].operations, STARTS)
        assert app.state.gateway is not None
        await app.state.gateway.run("testsrv", "grow", {"name": "odd", "description": MARKUP_BAIT + CONTROL_BAIT})
        screen = await operations_of(app, pilot, "testsrv", "odd")
        await screen.choose("odd")
        title = str(screen.query_one("#operation-title").render())
        await screen.choose("refuse")
        screen.query_one("#field-message").value = MARKUP_BAIT + CONTROL_BAIT
        await pilot.press("ctrl+r")
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "-32009" in str(status.render()))
        error = str(status.render())
        await pilot.press("ctrl+p")
        await pilot.press(*"testsrv odd")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette)
                    and any(MARKUP_BAIT + CONTROL_SHOWN in str(option.prompt) for option in app.screen.query_one(
                        "CommandList").options))  # type: ignore[attr-defined]
        await pilot.press("escape")
        app.notify(MARKUP_BAIT + CONTROL_BAIT, title=CONTROL_BAIT)  # as every screen's notifications go
        await until(pilot, lambda: len(app._notifications) > 0)
        notification = list(app._notifications)[-1]
    assert title == f"odd  (read)  {MARKUP_BAIT}{CONTROL_SHOWN}"
    assert error.endswith(f": {MARKUP_BAIT}{CONTROL_SHOWN}")
    assert (notification.message, notification.title, notification.markup) == (
        MARKUP_BAIT + CONTROL_SHOWN, CONTROL_SHOWN, False)


async def test_a_tools_form_takes_properties_named_as_no_identifier_is(tmp_path: Path) -> None:
    from console.widgets.operation_form import field_id
    from tests.test_mcp_upstreams import stdio

    async with console(tmp_path, settings={"mcp_servers": stdio()}) as (app, pilot):
        screen = await operations_of(app, pilot, "testsrv", "spelled")
        await screen.choose("spelled")
        screen.query_one(f"#{field_id('user.name')}").value = "ada"
        screen.query_one(f"#{field_id('ключ')}").value = "lovelace"
        screen.query_one(f"#{field_id('extra')}").value = '{"n": "\\ud800"}'  # as typed: JSON's escape
        await pilot.press("ctrl+r")
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "extra is not JSON the gateway takes: a string holds a lone surrogate"
                    in str(status.render()))
        screen.query_one(f"#{field_id('extra')}").value = '{"n": 1}'
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "success" in str(status.render()))
    assert json.loads(screen.result_text)["structuredContent"] == {"result": 'ada lovelace {"n": 1}'}
    assert field_id("user.name") == "field-user-2e-name" and field_id("dry-run") != field_id("dry_run")


def test_literal_text_reads_back_as_itself_through_textual_markup() -> None:
    from textual.content import Content

    from console.formatting import literal

    for text in (MARKUP_BAIT, "\\[b]x", "a\\", "[b]bold[/b] $var", "]", "[[", "\\\\[i]"):
        assert Content.from_markup(literal(text)).plain == text


def test_a_tables_cells_show_control_characters_written_out() -> None:
    from console.widgets.lines_table import Column, format_line

    line = format_line([60, 8], [Column("agent", 60), Column("n", 8, right=True)], [CONTROL_BAIT, "\x9b7"])
    assert line == f" {CONTROL_SHOWN:<60}    \\x9b7"


# Pieces of text that have each broken, or could break, a screen: markup, escapes, a lone surrogate (JSON can
# carry one, UTF-8 cannot), wide, combining and invisible characters, a long run.
ODD_PIECES = ("[/]", "[b]", "[@click=app.quit]x[/]", "[ and ]", "\\", "\x1b[2J", "\x00", "\n", "\t", "\r", "\u202e",
              "\ud800", "\udfff", "😀", "一二三", "\u0301", "\u200b", "\x7f", "\x9b", "$x", "{}", "%s", "a" * 300,
              "\ufeff", "\U0010ffff", "\u2028", " ")


async def test_requests_made_of_any_text_leave_the_console_whole(tmp_path: Path) -> None:
    """Requests as an orchestrator could send them, every text field made of ODD_PIECES (a fixed sequence):
    each pops up, shows whole (`f`), goes (`esc`), and is announced; then the permissions screen and the
    palette list them. Nothing may end the console."""
    from console.state import request_key
    from gateway_core.orchestrator.models import PermissionRequestEvent

    pick = random.Random(7)

    def odd() -> str:
        return "".join(pick.choice(ODD_PIECES) for _ in range(pick.randint(0, 6)))

    async with console(tmp_path, size=(80, 24)) as (app, pilot):
        for number in range(25):
            request = PermissionRequestEvent(
                request_id=f"r{number}{odd()}", agent_id=odd() or "a", agent_name=odd() or None,
                service_name=odd() or "s", reason=odd() or None, operation=odd() or None,
                params_preview={odd(): odd(), "list": [odd()]}, risk=pick.choice(["read", "destructive", None]))
            app.state.add_request(request)
            app.state.pending.move_to_end(request_key(request), last=False)  # the oldest is the one shown
            app._offer_next(automatic=True)
            await until(pilot, lambda shown=request: isinstance(app.screen, PermissionRequestModal)  # type: ignore[misc]
                        and app.screen.request is shown)
            await pilot.press("f")
            await pilot.pause(0.05)
            await pilot.press("escape", "escape")
            app.notify(odd(), title=odd())
            app._snoozed_until = 0  # the next one pops up at once
            await pilot.pause(0.05)
            assert app._exception is None, f"request {number}"
        await pilot.press("p")
        await pilot.pause(0.3)
        await pilot.press("ctrl+p", *"review")
        await pilot.pause(0.3)
        assert app._exception is None and len(app.state.pending) == 25
