"""What the screens show, pinned as SVG snapshots at 80x24 and 120x40: the dashboard, the permission modal,
the Coolify form and the permissions screen. Time is frozen (one clock for the console and the gateway,
and fixed event times), ids are fixed, the gateway binds any free port but the header shows a fixed
address, and no path is on screen.

Update after a deliberate change with `pytest tests/test_console_snapshots.py --snapshot-update`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from console.app import ConsoleApp
from gateway_core.auth import create_agent
from gateway_core.clock import FrozenClock
from gateway_core.config import load_settings
from gateway_core.events import CallFinished, PermissionEvent
from gateway_core.orchestrator.models import PermissionRequestEvent
from gateway_core.store import CallRecord
from sandbox import Sandbox
from tests.test_console import until

NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC).timestamp()
SHOWN_GATEWAY_ADDRESS = "127.0.0.1:8100"  # what the header says, whatever port was bound
SIZES = [(80, 24), (120, 40)]

CALLS = [  # one of each way in: JSON-RPC, MCP, the slash form, the console
    CallRecord(f"01900000-0000-7000-8000-00000000000{n}", NOW - 60 + n * 7, agent, method, "coolify", operation,
               status, code, duration, tokens, cost, f"rpc-{n}", via=via)
    for n, (agent, method, via, operation, status, code, duration, tokens, cost) in enumerate([
        ("agent-monitor", "mcp.execute", "rpc", "list-applications", "success", None, 41.2, 200, 0.0006),
        ("agent-monitor", "tools/call", "mcp", "get-application", "success", None, 18.9, 200, 0.0006),
        ("agent-deployer", "slash", "slash", "restart-application", "denied", -32004, 3.1, 0, 0.0),
        ("operator:alice", "console.execute", "console", "list-applications", "success", None, 22.4, 200, 0.0006),
        ("agent-monitor", "mcp.execute", "rpc", "get-application-logs", "error", -32007, 12.0, 0, 0.0),
    ])
]
REQUEST = PermissionRequestEvent(
    request_id="perm_req_snapshot", agent_id="agent-deployer", agent_name="deployer", service_name="coolify",
    operation="restart-application", risk="write", reason="Agent agent-deployer attempted to use coolify for "
    "operation: restart-application", params_preview={"uuid": "web", "wait": 0},
    timestamp=datetime.fromtimestamp(NOW - 42, UTC), expires_at=datetime.fromtimestamp(NOW + 3558, UTC))


def console_app(tmp_path: Path, sandbox: Sandbox | None = None) -> ConsoleApp:
    settings = load_settings(None, store={"path": tmp_path / "snap.db"}, server={"port": 0},
                             health={"interval_seconds": 3600}, console={"decision_guard_seconds": 0})
    return ConsoleApp(settings, orchestrator_port=0, sandbox=sandbox, clock=FrozenClock(NOW), login="alice",
                      gateway_address_shown=SHOWN_GATEWAY_ADDRESS)


def prepared(app: ConsoleApp, *steps: Callable[[ConsoleApp, Pilot[None]], Awaitable[None]],
             ) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run_before(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: app.runtime is not None and app.runtime.gateway.link_state is not None
                    and app.runtime.gateway.link_state.status == "connected")
        assert app.runtime is not None
        await create_agent(app.runtime.gateway.store, app.runtime.gateway.hasher, "deployer", "test",
                           "agent-deployer")
        await create_agent(app.runtime.gateway.store, app.runtime.gateway.hasher, "monitor", "test", "agent-monitor")
        app._load_agent_names()
        for step in steps:
            await step(app, pilot)
        app._refresh()  # what the once-a-second tick would show
        for field in app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause(0.3)
    return run_before


async def calls_made(app: ConsoleApp, pilot: Pilot[None]) -> None:
    assert app.runtime is not None
    gateway = app.runtime.gateway
    for record in CALLS:
        gateway.usage.add(record)
        gateway.events.publish(CallFinished(record))
    await until(pilot, lambda: app.dashboard.query_one("#calls").row_count == len(CALLS))  # type: ignore[attr-defined]


async def request_arrives(app: ConsoleApp, pilot: Pilot[None]) -> None:
    assert app.runtime is not None
    app.runtime.gateway.events.publish(PermissionEvent(REQUEST))
    await until(pilot, lambda: app.modal is not None)


async def grants_given(app: ConsoleApp, pilot: Pilot[None]) -> None:
    assert app.runtime is not None
    store = app.runtime.gateway.store
    await store.add_grant("agent-monitor", "coolify", "list-applications", None, "operator:alice")
    await store.add_grant("agent-deployer", "coolify", None, NOW + 8 * 3600, "operator:alice")


async def on_permissions_screen(app: ConsoleApp, pilot: Pilot[None]) -> None:
    await pilot.press("escape", "p")
    screen = app.permissions_screen
    await until(pilot, lambda: app.screen is screen and screen.query_one("#grants").row_count == 2)  # type: ignore[attr-defined]


async def restart_form(app: ConsoleApp, pilot: Pilot[None]) -> None:
    await pilot.press("c")
    coolify: Any = app.operations_screen
    await until(pilot, lambda: app.screen is coolify and coolify.service is not None)
    coolify.show_service("coolify")  # the sandbox configures five services: the first listed is not Coolify
    await coolify.choose("restart-application")
    picker = coolify.query_one("#field-uuid", Select)
    await until(pilot, lambda: "web" in coolify.query_one("#form").picked_names.get("uuid", {}).values())
    picker.value = "app1"
    coolify.query_one("#operations").focus()


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_dashboard(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = console_app(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, calls_made))


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_permission_modal(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = console_app(tmp_path)
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, calls_made, request_arrives))


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_permissions_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = console_app(tmp_path)
    assert snap_compare(app, terminal_size=size,
                        run_before=prepared(app, grants_given, request_arrives, on_permissions_screen))


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_coolify_form(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    app = console_app(tmp_path, Sandbox(agents=0))
    assert snap_compare(app, terminal_size=size, run_before=prepared(app, restart_form))
