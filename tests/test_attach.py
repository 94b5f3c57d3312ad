"""The operator API and consoles attached through it, over real sockets: our gateway and orchestrator, an
agent calling over HTTP, and RemoteGateway (what `mcp-console attach` runs) reading the snapshot and the
stream, through a proxy that can cut the connection as a network would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from textual.pilot import Pilot
from websockets.asyncio.client import connect

from console.app import ConsoleApp
from console.modals.confirm import ConfirmModal
from gateway_core import operator_feed, operator_routes
from gateway_core.auth import create_operator
from gateway_core.config import load_settings
from gateway_core.errors import PermissionDenied
from gateway_core.events import CallFinished, PermissionEvent, Resynced, Subscription
from gateway_core.operator_client import OperatorRefused, RemoteGateway
from gateway_core.operator_models import CallEvent
from gateway_core.orchestrator.client import DecisionConflict, UnknownGrant
from gateway_core.orchestrator.models import PermissionRequestEvent, PermissionRespondBody, PermissionResponseEvent
from gateway_core.store import CallRecord
from sandbox import Sandbox
from sandbox.coolify import FakeCoolify
from tests.cli import COMMAND, mcp_console
from tests.servers import DroppingProxy, LinkedGateway, run_linked, serve_asgi
from tests.test_console import (
    agent_call,
    agent_token,
    console,
    modal_open,
    run_until_confirmation,
    until,
)
from tests.test_console_terminal import free_port
from tests.test_process_exit import until_listening
from tests.test_wire_contract import execute


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


def drain(subscription: Subscription, into: list[Any]) -> list[Any]:
    while (event := subscription.get_nowait()) is not None:
        into.append(event)
    return into


async def agent_with_echo(linked: LinkedGateway) -> httpx.AsyncClient:
    agent_id, token = await linked.add_agent("deployer")
    await linked.gateway.store.add_grant(agent_id, "echo", None, None, "test")
    return httpx.AsyncClient(base_url=linked.url, timeout=30, headers={"authorization": f"Bearer {token}"})


async def heard_request(subscription: Subscription) -> PermissionRequestEvent:
    """The first permission request an attached console hears."""
    seen: list[Any] = []

    def requests() -> list[PermissionRequestEvent]:
        return [e.event for e in drain(subscription, seen)
                if isinstance(e, PermissionEvent) and isinstance(e.event, PermissionRequestEvent)]
    await eventually(lambda: bool(requests()))
    return requests()[0]


async def ledger_ids(linked: LinkedGateway) -> list[str]:
    await linked.gateway.recorder.flush()
    return [record.id async for record in linked.gateway.store.iter_calls()]


async def operator_token(linked: LinkedGateway, name: str) -> str:
    _, token = await create_operator(linked.gateway.store, linked.gateway.hasher, name, "test")
    await linked.gateway.authenticator.refresh()
    return token


async def test_agent_tokens_are_refused_on_the_operator_api_and_operator_tokens_on_the_agent_routes(
        tmp_path: Path) -> None:
    async with run_linked(tmp_path / "gw.db") as linked:
        agent = await agent_with_echo(linked)
        assert linked.operator_token is not None
        operator_headers = {"authorization": f"Bearer {linked.operator_token}"}
        async with agent, httpx.AsyncClient(base_url=linked.url) as anyone:
            refused_agent = await agent.get("/operator/snapshot")
            refused_nobody = await anyone.post("/operator/run", json={"service": "echo", "operation": "echo"})
            refused_operator = await anyone.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]),
                                                 headers=operator_headers)
            allowed = await anyone.get("/operator/snapshot", headers=operator_headers)
        ws_url = "ws" + linked.url[4:] + "/operator/events?after=0"
        async with connect(ws_url, additional_headers={"authorization": agent.headers["authorization"]}) as socket:
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await socket.recv()
        await linked.gateway.recorder.flush()
        audit = await linked.gateway.store.list_audit(20)
    assert refused_agent.status_code == 401 and refused_agent.json()["error"] == "unauthenticated"
    assert "agent token" in refused_agent.json()["message"]
    assert refused_nobody.status_code == 401
    assert refused_operator.status_code == 401 and refused_operator.json()["error"]["code"] == -32003
    assert "operator token" in refused_operator.json()["error"]["message"]
    assert allowed.status_code == 200 and allowed.json()["operator"] == "alice"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert sum(event.action == "auth.failed" for event in audit) == 4
    assert linked.operator_token not in json.dumps([event.detail for event in audit])


async def test_a_dropped_stream_resumes_without_a_gap_or_a_repeat(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "gw.db") as linked, DroppingProxy(int(linked.url.rsplit(":", 1)[1])) as proxy:
        agent = await agent_with_echo(linked)
        async with agent:
            for _ in range(3):
                await agent.post("/mcp/rpc", json=execute("echo", "echo", ["before"]))
            assert linked.operator_token is not None
            remote = RemoteGateway(proxy.url, linked.operator_token)
            await remote.connect()
            seen: list[Any] = []
            subscription = remote.subscribe()
            await eventually(lambda: remote.attachment.status == "connected")
            for _ in range(5):
                await agent.post("/mcp/rpc", json=execute("echo", "echo", ["live"]))
            proxy.refusing = True
            proxy.drop()
            await eventually(lambda: remote.attachment.status == "reconnecting")
            for _ in range(7):  # while the console is away
                await agent.post("/mcp/rpc", json=execute("echo", "echo", ["away"]))
            proxy.refusing = False
            expected = await ledger_ids(linked)
            await eventually(lambda: [e.record.id for e in drain(subscription, seen)
                                      if isinstance(e, CallFinished)] == expected)
            await asyncio.sleep(0.2)  # nothing more may come: a repeat would show here
            calls = [event.record.id for event in drain(subscription, seen) if isinstance(event, CallFinished)]
            await remote.aclose()
    assert calls == expected and len(expected) == 15
    assert remote.resyncs == 0  # resumed from where it was, not reloaded
    assert remote.today().total.calls == 15


async def test_a_console_away_longer_than_the_gateway_remembers_takes_a_new_snapshot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operator_feed, "RING_CAPACITY", 4)
    async with run_linked(tmp_path / "gw.db") as linked, DroppingProxy(int(linked.url.rsplit(":", 1)[1])) as proxy:
        agent = await agent_with_echo(linked)
        async with agent:
            assert linked.operator_token is not None
            remote = RemoteGateway(proxy.url, linked.operator_token)
            await remote.connect()
            seen: list[Any] = []
            subscription = remote.subscribe()
            await eventually(lambda: remote.attachment.status == "connected")
            proxy.refusing = True
            proxy.drop()
            await eventually(lambda: remote.attachment.status == "reconnecting")
            for _ in range(10):
                await agent.post("/mcp/rpc", json=execute("echo", "echo", ["away"]))
            proxy.refusing = False
            expected = await ledger_ids(linked)
            await eventually(lambda: any(isinstance(event, Resynced) for event in drain(subscription, seen)))
            await remote.aclose()
    assert remote.resyncs == 1
    assert [event.record.id for event in seen if isinstance(event, CallFinished)] == expected
    assert remote.today().total.calls == 10


async def test_an_operation_run_through_the_api_is_recorded_and_audited_as_that_operator(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "gw.db") as linked:
        remote = RemoteGateway(linked.url, await operator_token(linked, "carol"))
        viewer = RemoteGateway(linked.url, await operator_token(linked, "dave"), read_only=True)
        await remote.connect()
        await viewer.connect()
        outcome = await remote.run("echo", "echo", {"message": "restart at 3 a.m."})
        refused = await viewer.run("echo", "wipe", {"target": "prod"})
        with pytest.raises(PermissionDenied):
            await viewer.decide(PermissionRespondBody(request_id="r", approved=True))
        await eventually(lambda: "operator:carol" in remote.today().by_caller)
        audit = await remote.audit(50)
        await remote.aclose()
        await viewer.aclose()
        ledger = [record async for record in linked.gateway.store.iter_calls()]
    assert outcome.error is None and outcome.result is not None
    assert outcome.result.data["echo"] == "restart at 3 a.m."
    assert outcome.record.agent_id == "operator:carol"
    assert isinstance(refused.error, PermissionDenied) and "read-only" in refused.error.message
    assert [(record.agent_id, record.status, record.via) for record in ledger] == [
        ("operator:carol", "success", "console"), ("operator:dave", "read_only", "console")]
    assert any(event.actor == "operator:carol" and event.action == "operator.call"
               and event.subject == outcome.record.id for event in audit)


async def test_one_console_decides_and_every_other_hears_who_did(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "gw.db") as linked:
        agent_id, token = await linked.add_agent("deployer")
        first = RemoteGateway(linked.url, await operator_token(linked, "erin"))
        second = RemoteGateway(linked.url, await operator_token(linked, "frank"))
        await first.connect()
        await second.connect()
        heard_first, heard_second = first.subscribe(), second.subscribe()
        await eventually(lambda: first.operators_attached() == second.operators_attached() == ("erin", "frank"))
        async with httpx.AsyncClient(base_url=linked.url, timeout=30,
                                     headers={"authorization": f"Bearer {token}"}) as agent:
            body = execute("echo", "echo", ["deploy"])
            body["params"]["options"] = {"waitForApproval": 20}
            held = asyncio.create_task(agent.post("/mcp/rpc", json=body))
            request = await heard_request(heard_first)
            await first.decide(PermissionRespondBody(request_id=request.request_id, approved=True, scope="once",
                                                     decided_by="operator:someone-else"))
            answered = await asyncio.wait_for(held, 10)
            seen_second: list[Any] = []
            await eventually(lambda: any(isinstance(e, PermissionEvent) and isinstance(e.event, PermissionResponseEvent)
                                         for e in drain(heard_second, seen_second)))
            with pytest.raises(DecisionConflict) as conflict:
                await second.decide(PermissionRespondBody(request_id=request.request_id, approved=False))
        decision = next(e.event for e in seen_second if isinstance(e, PermissionEvent)
                        and isinstance(e.event, PermissionResponseEvent))
        audit = await second.audit(50)
        await first.aclose()
        await second.aclose()
    assert answered.status_code == 200 and "result" in answered.json()
    assert decision.decided_by == "operator:erin"  # from the token, not from what the console claimed
    assert conflict.value.first["decided_by"] == "operator:erin"  # the second console is told who won
    assert any(event.actor == "operator:erin" and event.action == "permission.approved" for event in audit)
    assert agent_id == request.agent_id


async def test_revoking_a_grant_no_longer_in_force_says_so_not_that_the_orchestrator_is_down(tmp_path: Path) -> None:
    """Our orchestrator's 404 for the grant came back as 503 orchestrator_unavailable."""
    async with run_linked(tmp_path / "gw.db") as linked:
        agent_id, _ = await linked.add_agent("deployer")
        grant = await linked.gateway.store.add_grant(agent_id, "echo", None, None, "test")
        remote = RemoteGateway(linked.url, await operator_token(linked, "gina"))
        await remote.connect()
        try:
            await remote.revoke(grant.id)
            with pytest.raises(UnknownGrant) as again:
                await remote.revoke(grant.id)
            async with httpx.AsyncClient(base_url=linked.url) as client:
                answer = await client.post("/operator/revoke", json={"grant_id": "grant_nope"},
                                           headers={"authorization": f"Bearer {await operator_token(linked, 'hal')}"})
        finally:
            await remote.aclose()
    assert grant.id in str(again.value)
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_grant", answer.text


async def test_an_agents_escape_sequences_reach_attached_consoles_written_out(tmp_path: Path) -> None:
    """What an agent sends travels as it sent it; what operators see of it in a request is written out. A
    lone surrogate (no UTF-8 text can carry it) is refused at the door: sent on, it closed the MCP server's
    pipe (the SDK could not write it), and held in a request it stopped the operator stream's encoder."""
    from tests.test_mcp_upstreams import STARTS, stdio

    # An MCP tool's arguments are checked by its JSON schema, for which such a string is a string.
    async with run_linked(tmp_path / "gw.db", mcp_servers=stdio()) as linked:
        await eventually(lambda: "note" in linked.gateway.services["testsrv"].operations, STARTS)
        _, token = await linked.add_agent("deployer")
        remote = RemoteGateway(linked.url, await operator_token(linked, "erin"))
        await remote.connect()
        heard = remote.subscribe()
        async with httpx.AsyncClient(base_url=linked.url, timeout=30,
                                     headers={"authorization": f"Bearer {token}"}) as agent:
            # As JSON allows it: the surrogate escaped (httpx's own encoding writes UTF-8, which cannot hold it).
            lone = await agent.post("/mcp/rpc", content=json.dumps(execute("testsrv", "note", {"text": "\ud800"})),
                                    headers={"content-type": "application/json"})
            body = execute("testsrv", "note", {"text": "\x1b[2J"})
            body["params"]["options"] = {"waitForApproval": 20}
            held = asyncio.create_task(agent.post("/mcp/rpc", json=body))
            request = await heard_request(heard)
            await remote.decide(PermissionRespondBody(request_id=request.request_id, approved=True, scope="once"))
            answered = await asyncio.wait_for(held, 10)
        await remote.aclose()
    assert lone.status_code == 400 and lone.json()["error"]["code"] == -32700
    assert request.params_preview == {"text": "\\x1b[2J"}
    assert answered.json()["result"]["data"]["content"][0]["text"] == "noted: \x1b[2J", answered.text


def test_a_preview_writes_out_escape_sequences() -> None:
    from gateway_core.orchestrator.client import params_preview

    preview = params_preview({"\x1bname": "\x1b[2J", "fine": {"n": 1}})
    assert preview == {"\\x1bname": "\\x1b[2J", "fine": {"n": 1}}


async def test_a_revoked_operator_is_cut_off_and_told_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operator_routes, "RECHECK_SECONDS", 0.1)
    async with run_linked(tmp_path / "gw.db") as linked:
        operator, token = await create_operator(linked.gateway.store, linked.gateway.hasher, "gina", "test")
        await linked.gateway.authenticator.refresh()
        remote = RemoteGateway(linked.url, token)
        await remote.connect()
        await eventually(lambda: remote.attachment.status == "connected")
        assert await linked.gateway.store.revoke_operator(operator.id, "cli:root")
        await linked.gateway.authenticator.refresh()
        await eventually(lambda: remote.attachment.status == "failed")
        with pytest.raises(OperatorRefused):
            await remote.agent_names()
        await remote.aclose()
    assert "revoked" in (remote.attachment.reason or "")


async def test_the_snapshot_holds_no_token_and_a_refusal_is_one_clear_line(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "gw.db") as linked:
        assert linked.operator_token is not None
        remote = RemoteGateway(linked.url, linked.operator_token)
        await remote.connect()
        async with httpx.AsyncClient(base_url=linked.url,
                                     headers={"authorization": f"Bearer {linked.operator_token}"}) as client:
            snapshot = (await client.get("/operator/snapshot")).text
            too_big = await client.get("/operator/audit?limit=100000")
            bad_body = await client.post("/operator/decide", content=b"{not json")
        await remote.aclose()
        with pytest.raises(OperatorRefused, match="refused the operator token"):
            await RemoteGateway(linked.url, "mcpo_not-a-token").connect()
        with pytest.raises(Exception, match="cannot reach the gateway"):
            await RemoteGateway("http://127.0.0.1:9", "mcpo_x").connect()
    assert linked.operator_token not in snapshot and "mcpa_" not in snapshot
    assert too_big.status_code == 400 and bad_body.status_code == 400
    assert bad_body.json()["error"] == "invalid"


async def test_sighup_style_reload_applies_limits_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "gw.db") as linked:
        agent = await agent_with_echo(linked)
        gateway = linked.gateway
        new = load_settings(None, store={"path": tmp_path / "gw.db"}, server={"port": 1234},
                            rate_limit={"per_agent": {"max_requests": 2, "window_ms": 60_000}},
                            policy={"always_ask": ["destructive"]})
        outcome = gateway.reload(new)
        async with agent:
            answers = [await agent.post("/mcp/rpc", json=execute("echo", "echo", ["hi"])) for _ in range(3)]
    assert outcome.applied == ["rate_limit", "policy.always_ask"]
    assert outcome.kept == ["server"]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert gateway.settings.server.port == 0  # still what it serves on


# -- consoles attached, used with the keyboard ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def attached_console(embedded: ConsoleApp, name: str, **options: Any) -> AsyncIterator[
        tuple[ConsoleApp, Pilot[None]]]:
    """A console attached to the gateway that `embedded` runs, as the operator `name` (a new token)."""
    assert embedded.runtime is not None and embedded.runtime.gateway_url is not None
    gateway = embedded.runtime.gateway
    _, token = await create_operator(gateway.store, gateway.hasher, name, "test")
    await gateway.authenticator.refresh()
    app = ConsoleApp(embedded.settings, remote=RemoteGateway(embedded.runtime.gateway_url, token), **options)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.state.gateway is not None and app.state.gateway.attachment is not None
                    and app.state.gateway.attachment.status == "connected")
        yield app, pilot


async def test_two_attached_consoles_and_the_embedded_one_see_a_request_and_one_decision_closes_all(
        tmp_path: Path) -> None:
    async with console(tmp_path) as (embedded, embedded_pilot), \
            attached_console(embedded, "erin") as (first, first_pilot), \
            attached_console(embedded, "frank") as (second, second_pilot):
        token = await agent_token(embedded)
        await until(second_pilot, lambda: ("3 operators", 2) in second.status)
        assert ("attached to " + (embedded.runtime.gateway_url or "")[7:] + " as frank", 0) in second.status
        held = asyncio.create_task(agent_call(embedded, token, waitForApproval=20))
        for app, pilot in ((embedded, embedded_pilot), (first, first_pilot), (second, second_pilot)):
            await until(pilot, lambda app=app: modal_open(app))  # type: ignore[misc]
        await first_pilot.press("a")
        assert (await asyncio.wait_for(held, 10)).json()["result"]["status"] == "success"
        for app, pilot in ((embedded, embedded_pilot), (second, second_pilot)):
            await until(pilot, lambda app=app: not modal_open(app))  # type: ignore[misc]
            await until(pilot, lambda app=app: any(  # type: ignore[misc]
                "by operator:erin" in str(note.message) for note in app._notifications))
        # Every console shows the same calls (the attached ones a moment later: the stream gathers 20 ms).
        await until(second_pilot, lambda: len(embedded.state.calls) >= 1 and [
            [call.id for call in app.state.calls] for app in (first, second)] == [
            [call.id for call in embedded.state.calls]] * 2)


async def test_quitting_an_attached_console_leaves_the_gateway_serving_and_asks_nothing(tmp_path: Path) -> None:
    async with console(tmp_path) as (embedded, embedded_pilot):
        token = await agent_token(embedded)
        assert embedded.runtime is not None
        await embedded.runtime.gateway.store.add_grant(
            (await embedded.runtime.gateway.store.list_agents())[0].id, "echo", None, None, "test")
        async with attached_console(embedded, "erin") as (attached, pilot):
            await until(embedded_pilot, lambda: len(embedded.state.gateway.operators_attached()) == 2  # type: ignore[union-attr]
                        )
            await pilot.press("q")
            await until(pilot, lambda: attached.return_code is not None or not attached.is_running)
        assert not isinstance(attached.screen_stack[-1] if attached.screen_stack else None, ConfirmModal)
        await until(embedded_pilot, lambda: len(embedded.state.gateway.operators_attached()) == 1  # type: ignore[union-attr]
                    )
        answer = await agent_call(embedded, token)
    assert answer.status_code == 200 and answer.json()["result"]["status"] == "success"


async def test_an_operation_run_from_an_attached_console_is_the_operators_in_the_ledger(tmp_path: Path) -> None:
    sandbox = Sandbox(agents=0)
    async with console(tmp_path, sandbox=sandbox) as (embedded, _), \
            attached_console(embedded, "erin") as (attached, pilot):
        screen = await run_until_confirmation(attached, pilot, "restart-application", "app1")
        await pilot.press("y")
        status = screen.query_one("#operation-status")
        await until(pilot, lambda: "success" in str(status.render()))
        assert sandbox.coolify.requests_to("POST", "/applications/app1/restart")
        assert embedded.runtime is not None
        gateway = embedded.runtime.gateway
        await gateway.recorder.flush()
        ledger = [record async for record in gateway.store.iter_calls()]
        audit = await gateway.store.list_audit(50)
    restart = [record for record in ledger if record.operation == "restart-application"]
    assert [record.agent_id for record in restart] == ["operator:erin"]
    assert any(event.actor == "operator:erin" and event.action == "operator.call" and event.subject == restart[0].id
               for event in audit)


async def test_sighup_reloads_the_config_of_a_serving_gateway_and_says_what_needs_a_restart(tmp_path: Path) -> None:
    config, port, db = tmp_path / "gw.toml", free_port(), tmp_path / "gw.db"
    config.write_text("[rate_limit]\nper_agent = { max_requests = 600, window_ms = 60000 }\n")
    fake = FakeCoolify()
    async with serve_asgi(fake.app()) as coolify_url:
        process = subprocess.Popen([*COMMAND, "serve", "--db", str(db), "--config", str(config), "--port", str(port),
                                    "--orchestrator-port", str(free_port())], stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "COOLIFY_API_URL": coolify_url, "COOLIFY_API_TOKEN": fake.token})
        try:
            agent = json.loads((await mcp_console("agents", "add", "a", "--json", "--db", db)).stdout)
            await mcp_console("grants", "add", agent["id"], "coolify", "--db", db)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10,
                                         headers={"authorization": f"Bearer {agent['token']}"}) as client:
                await until_listening(client, process)
                config.write_text("upstream_timeout_seconds = 5\n[rate_limit]\nper_agent = { max_requests = 1, "
                                  "window_ms = 60000 }\n[server]\nmax_body_bytes = 1000\n")
                await asyncio.sleep(2.5)  # the new agent and its grant are known within two seconds
                process.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.5)
                answers = [await client.post("/mcp/rpc", json=execute("coolify", "list-servers", []))
                           for _ in range(2)]
                config.write_text("[rate_limit\n")  # broken: nothing may change, and the gateway serves on
                process.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.5)
                assert (await client.get("/health")).status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            _, log = process.communicate(timeout=15)
    assert [answer.status_code for answer in answers] == [200, 429]
    assert "now in force: rate_limit, upstream_timeout_seconds" in log
    assert "in force only after a restart: server" in log
    assert "the config was not reloaded, nothing changed" in log
    assert process.returncode == 0


async def test_an_event_that_comes_again_is_applied_once_and_said_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    remote = RemoteGateway("http://127.0.0.1:9", "mcpo_unused-token")
    subscription = remote.subscribe()
    record = CallRecord("c1", 1.0, "agent", "mcp.execute", "coolify", "list-applications", "success", None, 1.0, 1,
                        0.1, None)
    try:
        for _ in range(2):
            remote._apply(CallEvent(seq=1, record=record))  # the stream has no way to repeat one: only a bug could
        published = [subscription.get_nowait(), subscription.get_nowait()]
    finally:
        subscription.close()
        await remote.aclose()
    assert isinstance(published[0], CallFinished) and published[1] is None
    assert "event 1 came again after 1" in caplog.text
