"""The console, used as an operator uses it: keys pressed with Textual's Pilot, against the real gateway
and our orchestrator running inside the app, and agents calling over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from textual.pilot import Pilot
from textual.widgets import DataTable

from console.app import ConsoleApp
from console.modals.permission_request import PermissionRequestModal
from gateway_core.auth import create_agent
from gateway_core.catalog import DEFAULT_CATALOG, Catalog
from gateway_core.config import load_settings
from tests.echo_service import ECHO_SPEC, EchoHandler, create_echo_upstream
from tests.servers import serve_asgi
from tests.test_wire_contract import execute


async def until(pilot: Pilot[None], condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await pilot.pause(0.02)


@contextlib.asynccontextmanager
async def console(tmp_path: Path, read_only: bool = False) -> AsyncIterator[tuple[ConsoleApp, Pilot[None]]]:
    async with serve_asgi(create_echo_upstream()) as upstream:
        settings = load_settings(None, store={"path": tmp_path / "console.db"}, server={"port": 0})
        app = ConsoleApp(settings, orchestrator_port=0, read_only=read_only,
                         catalog=Catalog((*DEFAULT_CATALOG, ECHO_SPEC)), handlers={"echo": EchoHandler(upstream)})
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.runtime is not None and app.runtime.gateway.link_state is not None
                        and app.runtime.gateway.link_state.status == "connected")
            yield app, pilot


async def agent_token(app: ConsoleApp) -> str:
    assert app.runtime is not None
    gateway = app.runtime.gateway
    _, token = await create_agent(gateway.store, gateway.hasher, "deployer", "test")
    await gateway.authenticator.refresh()
    return token


async def agent_call(app: ConsoleApp, token: str, operation: str = "echo", args: Any = None,
                     **options: Any) -> httpx.Response:
    assert app.runtime is not None
    body = execute("echo", operation, args or ["hi"])
    if options:
        body["params"]["options"] = options
    async with httpx.AsyncClient(base_url=app.runtime.gateway_server.url, timeout=30,
                                 headers={"authorization": f"Bearer {token}"}) as client:
        return await client.post("/mcp/rpc", json=body)


def modal_open(app: ConsoleApp) -> bool:
    return isinstance(app.screen, PermissionRequestModal)


async def test_a_request_pops_up_and_a_approves_it_so_the_held_call_goes_through(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = asyncio.create_task(agent_call(app, token, waitForApproval=20))
        await until(pilot, lambda: modal_open(app))
        assert isinstance(app.screen, PermissionRequestModal)
        assert app.screen.request.service_name == "echo" and app.screen.request.operation == "echo"
        await pilot.press("a")
        response = await asyncio.wait_for(held, 10)
        await until(pilot, lambda: not app.pending)
    assert response.status_code == 200


async def test_d_denies_and_the_agent_hears_denied(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = asyncio.create_task(agent_call(app, token, waitForApproval=20))
        await until(pilot, lambda: modal_open(app))
        await pilot.press("d")
        error = (await asyncio.wait_for(held, 10)).json()["error"]
    assert error["code"] == -32004 and error["data"]["status"] == "denied"


async def test_a_destructive_request_needs_a_second_distinct_key(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        held = asyncio.create_task(agent_call(app, token, "wipe", ["disk-1"], waitForApproval=20))
        await until(pilot, lambda: modal_open(app))
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
        assert len(app.pending) == 1
        header = str(app.query_one("#header").render())
        assert "pending 1" in header
        await pilot.press("r")
        await until(pilot, lambda: modal_open(app))


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
    assert not app.pending


async def test_read_only_mode_shows_requests_but_never_offers_to_decide(tmp_path: Path) -> None:
    async with console(tmp_path, read_only=True) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)
        await until(pilot, lambda: len(app.pending) == 1)
        await pilot.press("r", "a")
        await pilot.pause(0.3)
        assert not modal_open(app) and len(app.pending) == 1


async def test_calls_appear_in_the_live_table(tmp_path: Path) -> None:
    async with console(tmp_path) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token, "nope")
        await until(pilot, lambda: app.query_one("#calls").row_count >= 1)  # type: ignore[attr-defined]
        assert app.calls[0].error_code == -32002
        services = app.query_one("#services", DataTable)
        await until(pilot, lambda: services.get_row("echo")[3:5] == ["1", "1"])  # calls, errors
        assert services.row_count == 11
