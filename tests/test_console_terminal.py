"""End to end in a real terminal: tmux runs the installed `mcp-console --sandbox`, an agent's call needs
permission, the modal appears on the screen, `a` approves it from the keyboard, and the call succeeds."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli import mcp_console

MCP_CONSOLE = Path(sys.executable).parent / "mcp-console"  # the installed entry point, as a user runs it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def terminal_session() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the terminal test (.ci/run installs it: apt-get install tmux)")
    name = f"mcp-console-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


async def screen_shows(session: str, *texts: str, within: float = 15.0, one_line: bool = False) -> str:
    """Waits until the pane shows every text (all on one line, with `one_line`)."""
    deadline = time.monotonic() + within
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        places = screen.splitlines() if one_line else [screen]
        if any(all(text in place for text in texts) for place in places):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen never showed {texts}:\n{screen}")
        await asyncio.sleep(0.1)


async def session_ends(session: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the console did not quit"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(90)
async def test_approving_from_a_real_terminal_lets_the_agents_call_through(tmp_path: Path,
                                                                           terminal_session: str) -> None:
    db, port = tmp_path / "e2e.db", free_port()
    command = (f"{MCP_CONSOLE} --sandbox --sandbox-agents 0 --db {db} --gateway-port {port} "
               f"--orchestrator-port {free_port()}")
    tmux("new-session", "-d", "-s", terminal_session, "-x", "120", "-y", "40", command)
    await screen_shows(terminal_session, "orch linked", "0 pending")

    agent = json.loads((await mcp_console("agents", "add", "e2e-deployer", "--json", "--db", db)).stdout)
    body = {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
            "params": {"service": "coolify", "operation": "restart-application", "args": ["web"],
                       "options": {"waitForApproval": 30}}}
    async with httpx.AsyncClient(timeout=40, headers={"authorization": f"Bearer {agent['token']}"}) as client:
        await asyncio.sleep(1.5)  # the gateway learns of a new agent within its one-second refresh
        held = asyncio.create_task(client.post(f"http://127.0.0.1:{port}/mcp/rpc", json=body))
        screen = await screen_shows(terminal_session, "Permission request", "restart-application")
        assert "e2e-deployer" in screen and "a approve this call" in screen
        tmux("send-keys", "-t", terminal_session, "a")
        response = await asyncio.wait_for(held, 15)
    assert response.json()["result"]["status"] == "success"
    # And the call is in the live table: operation and status on one row.
    await screen_shows(terminal_session, "restart-application", " ok ", one_line=True)
    tmux("send-keys", "-t", terminal_session, "q")
    await session_ends(terminal_session)


@pytest.mark.timeout(60)
async def test_a_terminated_console_writes_its_ledger_before_it_goes(tmp_path: Path, terminal_session: str) -> None:
    db, port, config = tmp_path / "term.db", free_port(), tmp_path / "slow-ledger.toml"
    config.write_text("[ledger]\nflush_interval_seconds = 5\n")  # rows wait for the next flush, or the stop
    command = (f"exec {MCP_CONSOLE} --db {db} --config {config} --gateway-port {port} "
               f"--orchestrator-port {free_port()}")
    tmux("new-session", "-d", "-s", terminal_session, "-x", "100", "-y", "30", command)
    await screen_shows(terminal_session, "orch linked")
    pid = int(tmux("display-message", "-p", "-t", terminal_session, "#{pane_pid}"))
    agent = json.loads((await mcp_console("agents", "add", "lister", "--json", "--db", db)).stdout)
    await asyncio.sleep(1.5)  # the gateway learns of a new agent within its one-second refresh
    async with httpx.AsyncClient(timeout=10, headers={"authorization": f"Bearer {agent['token']}"}) as client:
        for number in range(20):  # answered, and each one a ledger row still in memory
            answer = await client.post(f"http://127.0.0.1:{port}/mcp/rpc",
                                       json={"jsonrpc": "2.0", "id": number, "method": "mcp.listServices"})
            assert "result" in answer.json()
    os.kill(pid, signal.SIGTERM)  # as when an SSH session is killed
    await session_ends(terminal_session)
    with sqlite3.connect(db) as ledger:
        rows = ledger.execute("SELECT COUNT(*) FROM calls WHERE method = 'mcp.listServices'").fetchone()[0]
    assert rows == 20
