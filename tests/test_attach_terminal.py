"""On call, end to end in real terminals: `mcp-console serve` runs in one tmux window as it would under
systemd, an operator runs `mcp-console attach` in another, an agent's call needs permission, `a` on the
attached console approves it, the held call completes; the attached console quits (without asking) and
the gateway goes on serving."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from sandbox.coolify import FakeCoolify
from tests.cli import mcp_console
from tests.servers import serve_asgi
from tests.test_console_terminal import (
    DECISION_GUARD,
    MCP_CONSOLE,
    free_port,
    screen_shows,
    terminal_session,
    tmux,
)

__all__ = ["terminal_session"]  # the fixture, used by name


async def until_ready(client: httpx.AsyncClient, log: Path) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                if (await client.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            await asyncio.sleep(0.1)


def window_ends(target: str) -> bool:
    return target not in tmux("list-windows", "-a", "-F", "#{session_name}:#{window_name}").split()


@pytest.mark.timeout(90)
async def test_serve_in_one_window_attach_in_another_approve_and_leave(tmp_path: Path,
                                                                      terminal_session: str) -> None:
    db, port = tmp_path / "oncall.db", free_port()
    operator = json.loads((await mcp_console("operators", "add", "oncall", "--json", "--db", db)).stdout)
    agent = json.loads((await mcp_console("agents", "add", "deployer", "--json", "--db", db)).stdout)
    token_file = tmp_path / "operator-token"
    token_file.write_text(operator["token"] + "\n")
    token_file.chmod(0o600)
    fake = FakeCoolify()
    async with serve_asgi(fake.app()) as coolify_url:
        serve = (f"env COOLIFY_API_URL={coolify_url} COOLIFY_API_TOKEN={fake.token} {MCP_CONSOLE} serve --db {db} "
                 f"--port {port} --orchestrator-port {free_port()} 2>{tmp_path / 'serve.log'}")
        tmux("new-session", "-d", "-s", terminal_session, "-n", "serve", "-x", "120", "-y", "40", serve)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=40,
                                     headers={"authorization": f"Bearer {agent['token']}"}) as client:
            await until_ready(client, tmp_path / "serve.log")
            attach = (f"env XDG_DATA_HOME={tmp_path / 'home'} {MCP_CONSOLE} attach http://127.0.0.1:{port} "
                      f"--token-file {token_file}")
            tmux("new-window", "-t", terminal_session, "-n", "attach", attach)
            target = f"{terminal_session}:attach"
            await screen_shows(target, f"attached to 127.0.0.1:{port} as oncall", "0 pending")

            held = asyncio.create_task(client.post("/mcp/rpc", json={
                "jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
                "params": {"service": "coolify", "operation": "restart-application", "args": ["web"],
                           "options": {"waitForApproval": 30}}}))
            screen = await screen_shows(target, "Permission request", "restart-application")
            assert "deployer" in screen
            await asyncio.sleep(DECISION_GUARD)
            tmux("send-keys", "-t", target, "a")
            answer = await asyncio.wait_for(held, 15)
            assert answer.json()["result"]["status"] == "success"

            tmux("send-keys", "-t", target, "q")  # leaves at once: nothing to confirm, the gateway serves on
            async with asyncio.timeout(10):
                while not window_ends(target):
                    await asyncio.sleep(0.1)
            again = await client.post("/mcp/rpc", json={"jsonrpc": "2.0", "id": 2, "method": "mcp.listServices"})
            assert "result" in again.json()
            assert (await client.get("/health")).status_code == 200
        tmux("send-keys", "-t", f"{terminal_session}:serve", "C-c")
    with sqlite3.connect(db) as store:
        decided_by = store.execute("SELECT decided_by FROM permission_requests").fetchall()
        audited = store.execute("SELECT actor FROM audit WHERE action = 'permission.approved'").fetchall()
    assert decided_by == [("operator:oncall",)] and audited == [("operator:oncall",)]
    assert operator["token"] not in (tmp_path / "serve.log").read_text()

