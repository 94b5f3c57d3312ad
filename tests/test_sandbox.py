"""The sandbox as a newcomer meets it (`mcp-console --sandbox`): every stand-in served on loopback, the agents calling
all of them, health, calls and cost live on the dashboard, postgres and minio explained in a line each; and the
console's first frame, with every service configured, drawn before anything heavy is imported.

Run as a script (`python -m tests.test_sandbox`), this file is the first-frame probe: a fresh interpreter, so what
it finds in `sys.modules` is what the console's start-up imported, and the time it prints is the real figure."""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports below: the probe's figure counts them

import asyncio  # noqa: E402  (the clock above starts first)
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from textual import events  # noqa: E402

from console.app import ConsoleApp  # noqa: E402
from console.widgets.lines_table import LinesTable  # noqa: E402
from gateway_core.config import load_settings  # noqa: E402
from sandbox import SERVICES, Sandbox  # noqa: E402

IMPORTED = time.perf_counter()  # the console's modules loaded, as `mcp-console` loads them before the app starts
# Modules that cost tenths of a second to import (the MCP SDK ~0.8 s) or that only a call needs: none may load
# before the console's first frame.
HEAVY = ("mcp", "mcp_types", "openapi_core", "githubkit", "asyncpg", "psycopg", "aiobotocore", "botocore",
         "jsonschema", "cryptography", "jwt", "aiohttp")
ROOT = Path(__file__).resolve().parents[1]
FOUND = "first frame: "  # the probe's line on stdout
UNREACHABLE = "192.0.2.1"  # TEST-NET-1: a connection there hangs rather than fails, so waiting on it would show


class FirstFrame(ConsoleApp):
    """The console, saying on stdout what had happened by the time its first frame was on screen (Textual's
    `Ready`)."""

    CSS_PATH = str(ROOT / "console" / "console.tcss")  # Textual reads a relative one beside the subclass's module
    seen: dict[str, Any] | None = None

    def on_ready(self, event: events.Ready) -> None:
        now = time.perf_counter()
        self.seen = {"seconds": now - STARTED, "after_imports": now - IMPORTED, "screen": type(self.screen).__name__,
                     "heavy": sorted(name for name in HEAVY if name in sys.modules)}
        print(FOUND + json.dumps(self.seen), flush=True)


def every_service_configured(store: Path) -> dict[str, Any]:
    """Settings for all ten services: the sandbox points five at its stand-ins, the rest at nothing that answers."""
    mcp_server = f"{sys.executable} {ROOT / 'tests' / 'mcp_servers' / 'testsrv.py'}"
    return {"store": {"path": store}, "server": {"port": 0},
            "postgres_ka_url": f"postgresql://gateway:unused@{UNREACHABLE}:5432/kids-ascension",
            "minio_endpoint": UNREACHABLE, "minio_access_key": "probe", "minio_secret_key": "probe-secret",
            "playwright_mcp_command": mcp_server, "shadcn_mcp_command": mcp_server, "magicui_mcp_command": mcp_server}


async def probe() -> None:
    with tempfile.TemporaryDirectory() as directory:
        app = FirstFrame(load_settings(None, **every_service_configured(Path(directory) / "probe.db")),
                         orchestrator_port=0, sandbox=Sandbox(agents=3), login="probe")
        async with app.run_test(size=(80, 24)) as pilot:
            while app.seen is None:
                await pilot.pause(0.01)


def first_frame() -> dict[str, Any]:
    """The probe's findings, from a fresh interpreter, as soon as it has them (how it stops is not this test's)."""
    with subprocess.Popen([sys.executable, "-m", "tests.test_sandbox"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True) as child:
        watchdog = threading.Timer(60, child.kill)  # a probe that never draws ends, and the test fails
        watchdog.start()
        try:
            assert child.stdout is not None
            found = next((line for line in child.stdout if line.startswith(FOUND)), None)
        finally:
            watchdog.cancel()
            child.terminate()
    assert found is not None, f"the probe ended ({child.returncode}) before its first frame"
    seen: dict[str, Any] = json.loads(found.removeprefix(FOUND))
    return seen


async def test_the_agents_call_every_stand_in_and_the_dashboard_shows_them_live(tmp_path: Path) -> None:
    from tests.test_console import console, until  # here, not above: the probe imports only what the console does

    sandbox = Sandbox(agents=3, calls_per_second=20)
    async with console(tmp_path, sandbox=sandbox) as (app, pilot):
        assert app.runtime is not None
        gateway = app.runtime.gateway
        served = set(SERVICES)
        await until(pilot, lambda: {c.service for c in app.state.calls if c.status == "success"} >= served, 30)
        await until(pilot, lambda: all(gateway.service_status(name) == "healthy" for name in served), 30)
        await until(pilot, lambda: app.modal is not None, 30)  # a write the deployer or the janitor has no grant for
        services = app.dashboard.query_one("#services", LinesTable)

        def every_stand_in_live_on_the_dashboard() -> bool:
            # Asked again until true: on a busy machine one health check may come back slow (degraded) for a while.
            app._refresh()
            rows = [services.row(name) for name in served]
            return all(row is not None and "healthy" in row[1] and int(row[4]) > 0 for row in rows)

        await until(pilot, every_stand_in_live_on_the_dashboard, 30)
        assert services.row("postgres") == (" ○ postgres: not in the sandbox: for a real one set POSTGRES_KA_URL"
                                            " (or one of 8 others)",)
        assert services.row("minio") == (" ○ minio: not in the sandbox: for a real one set MINIO_ENDPOINT,"
                                         " MINIO_ACCESS_KEY, MINIO_SECRET_KEY",)
        assert all(gateway.usage.by_service[name].cost_usd > 0 for name in served), gateway.usage.by_service
        screen = app.export_screenshot()
        credentials = (sandbox.coolify.token, sandbox.mem0.api_key, sandbox.github.token, sandbox.cloudflare.token,
                       sandbox.n8n.api_key)
        assert all(credential and credential not in screen for credential in credentials)
    assert {vendor: found for vendor, found in sandbox.violations().items() if found} == {}
    assert len({server.url for server in sandbox.servers.values()}) == len(SERVICES)  # a port each, bound per run


def test_the_first_frame_comes_before_anything_heavy_is_imported() -> None:
    seen = first_frame()
    print(f"first frame {seen['seconds']:.3f} s after the probe's interpreter started, imports included "
          f"({seen['after_imports']:.3f} s after them)")
    assert seen["screen"] == "DashboardScreen"
    assert seen["heavy"] == [], f"imported before the first frame: {seen['heavy']}"


if __name__ == "__main__":
    asyncio.run(probe())
