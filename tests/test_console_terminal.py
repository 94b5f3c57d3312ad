"""End to end in a real terminal: tmux runs the installed `mcp-console --sandbox`, an agent's call needs
permission, the modal appears on the screen, `a` approves it from the keyboard, and the call succeeds; and
however the console's terminal goes away, or a signal comes, the process stops cleanly within 5 s."""

from __future__ import annotations

import asyncio
import contextlib
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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli import COMMAND, mcp_console
from tests.ports import free_port

MCP_CONSOLE = Path(sys.executable).parent / "mcp-console"  # the installed entry point, as a user runs it
DECISION_GUARD = 0.5  # a request's modal takes keys 0.4 s after it is up ([console] decision_guard_seconds)



def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def terminal_session() -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the terminal test (.ci/run installs it: apt-get install tmux)")
    name = f"mcp-console-{uuid.uuid4().hex[:8]}"
    # tmux's server exits with its last session: a test that ends a session and starts the next one under the
    # same name could meet the server on its way out (its new console died at once, the pane gone). A session
    # of nothing keeps the server up for the whole test.
    keeper = f"keeper-{name}"  # not {name}-...: tmux takes a -t name that matches no session as a prefix
    tmux("new-session", "-d", "-s", keeper, "sleep 3600")
    try:
        yield name
    finally:
        for session in (name, keeper):
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


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


async def console_started(session: str, command: str, log: Path, *texts: str,
                          size: tuple[int, int] = (120, 40)) -> None:
    """Runs `command` in a new tmux session and waits until it shows `texts`. A console that dies at once takes
    its pane, and what it printed, with it: then the failure says what tmux said and what the console logged."""
    tmux("new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), command)
    try:
        await screen_shows(session, *texts)
    except (AssertionError, subprocess.CalledProcessError) as exc:
        said = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        logged = log.read_text() if log.exists() else "(no log file)"
        raise AssertionError(f"the console did not start: {said}\nits log, {log.name}:\n{logged}") from None


async def screen_lacks(session: str, text: str, within: float = 15.0) -> None:
    """Waits until the pane no longer shows `text`."""
    deadline = time.monotonic() + within
    while text in (screen := tmux("capture-pane", "-p", "-t", session)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen still showed {text!r}:\n{screen}")
        await asyncio.sleep(0.1)


async def session_ends(session: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "the console did not quit"
        await asyncio.sleep(0.1)


def running(pid: int) -> bool:
    """Whether the process still runs (a zombie has ended: its parent, tmux, may be slow to collect it)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat_line.rpartition(")")[2].split()[0] != "Z"


async def process_ends(pid: int, within: float, after: str) -> None:
    deadline = time.monotonic() + within
    while running(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"the console (pid {pid}) still ran {within} s after {after}")
        await asyncio.sleep(0.05)


def port_taken(port: int) -> bool:
    """Whether a process still holds the port (binding it fails)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the gateway binds: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def slow_ledger(tmp_path: Path) -> Path:
    """A config under which rows wait in memory for the next flush (5 s), or the stop."""
    config = tmp_path / "slow-ledger.toml"
    config.write_text("[ledger]\nflush_interval_seconds = 5\n")
    return config


def ledger(db: Path) -> Counter[tuple[str, str | None, str]]:
    """The calls ledger's rows, as (method, operation, status)."""
    with sqlite3.connect(db) as store:
        return Counter(store.execute("SELECT method, operation, status FROM calls").fetchall())


@pytest.mark.timeout(90)
async def test_approving_from_a_real_terminal_lets_the_agents_call_through(tmp_path: Path,
                                                                           terminal_session: str) -> None:
    db, port = tmp_path / "e2e.db", free_port()
    command = (f"{MCP_CONSOLE} --sandbox --sandbox-agents 0 --db {db} --config {slow_ledger(tmp_path)} "
               f"--gateway-port {port} --orchestrator-port {free_port()}")
    await console_started(terminal_session, command, db.with_suffix(".log"), "orch linked", "0 pending")

    agent = json.loads((await mcp_console("agents", "add", "e2e-deployer", "--json", "--db", db)).stdout)

    def held(operation: str) -> dict[str, object]:
        return {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
                "params": {"service": "coolify", "operation": operation, "args": ["web"],
                           "options": {"waitForApproval": 30}}}

    async with httpx.AsyncClient(timeout=40, headers={"authorization": f"Bearer {agent['token']}"}) as client:
        await asyncio.sleep(1.5)  # the gateway learns of a new agent within its one-second refresh
        restart = asyncio.create_task(client.post(f"http://127.0.0.1:{port}/mcp/rpc", json=held("restart-application")))
        screen = await screen_shows(terminal_session, "Permission request", "restart-application")
        assert "e2e-deployer" in screen and "a this call" in screen
        # esc defers it, and a request arriving now does not take the keyboard: it is announced, r opens it.
        await asyncio.sleep(DECISION_GUARD)
        tmux("send-keys", "-t", terminal_session, "Escape")
        await screen_shows(terminal_session, "1 pending")
        await screen_lacks(terminal_session, "Permission request")
        logs = asyncio.create_task(client.post(f"http://127.0.0.1:{port}/mcp/rpc",
                                               json=held("get-application-logs")))
        await screen_shows(terminal_session, "2 pending", "asks for")
        assert "Permission request  " not in tmux("capture-pane", "-p", "-t", terminal_session)
        tmux("send-keys", "-t", terminal_session, "r")
        await screen_shows(terminal_session, "Permission request  1 of 2", "restart-application")
        await asyncio.sleep(DECISION_GUARD)
        tmux("send-keys", "-t", terminal_session, "a")
        await screen_shows(terminal_session, "Permission request  1 of 1", "get-application-logs")
        await asyncio.sleep(DECISION_GUARD)
        tmux("send-keys", "-t", terminal_session, "a")
        responses = await asyncio.wait_for(asyncio.gather(restart, logs), 15)
    assert [response.json()["result"]["status"] for response in responses] == ["success", "success"]
    # And the call is in the live table: operation and status on one row.
    await screen_shows(terminal_session, "restart-application", " ok ", one_line=True)
    # q asks first: the gateway serves agents. n keeps it; y stops it.
    tmux("send-keys", "-t", terminal_session, "q")
    await screen_shows(terminal_session, "Stop the gateway for 1 agent?")
    tmux("send-keys", "-t", terminal_session, "n")
    await asyncio.sleep(0.5)
    assert "Stop the gateway" not in tmux("capture-pane", "-p", "-t", terminal_session)
    tmux("send-keys", "-t", terminal_session, "q")
    await screen_shows(terminal_session, "Stop the gateway for 1 agent?")
    tmux("send-keys", "-t", terminal_session, "y")
    await session_ends(terminal_session)
    assert ledger(db)[("mcp.execute", "restart-application", "success")] == 1  # quitting wrote what the slow flush held


@pytest.mark.timeout(60)
async def test_a_terminated_console_writes_its_ledger_before_it_goes(tmp_path: Path, terminal_session: str) -> None:
    db, port = tmp_path / "term.db", free_port()
    command = (f"exec {MCP_CONSOLE} --db {db} --config {slow_ledger(tmp_path)} --gateway-port {port} "
               f"--orchestrator-port {free_port()}")
    await console_started(terminal_session, command, db.with_suffix(".log"), "orch linked", size=(100, 30))
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


# How the console's terminal goes away, and which reasons its log may give for stopping. "pty closed first":
# the console runs in a session of its own (setsid), so closing its pty sends it no SIGHUP: it has to notice.
ENDINGS = {
    "tmux session killed": {"SIGHUP", "terminal lost"},
    "SIGHUP, pty still open": {"SIGHUP"},
    "SIGTERM, pty still open": {"SIGTERM"},
    "pty closed first": {"terminal lost"},
}
RUNS = 3  # each ending a few times: whether Textual's writes block depends on when the terminal goes
CALLS_PER_RUN = 5


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_console_stops_cleanly_however_its_terminal_goes(ending: str, tmp_path: Path,
                                                                 terminal_session: str) -> None:
    config = slow_ledger(tmp_path)
    for run in range(RUNS):
        db = tmp_path / f"run-{run}.db"  # a store of its own: no request left pending by the last run
        agent = json.loads((await mcp_console("agents", "add", "deployer", "--json", "--db", db)).stdout)
        await stop_a_busy_console(ending, db, config, agent["token"], terminal_session)
        assert ledger(db) == {("mcp.listServices", None, "success"): CALLS_PER_RUN,
                              ("mcp.execute", "restart-application", "success"): 1,
                              ("mcp.execute", "restart-application", "gateway_stopping"): 1}  # the held call, answered
        log = db.with_suffix(".log").read_text()
        stops = [line.partition("stopped (")[2].partition(")")[0] for line in log.splitlines() if "stopped (" in line]
        assert len(stops) == 1 and stops[0] in ENDINGS[ending], log
        assert "did not finish" not in log, "the watchdog had to end it"


async def stop_a_busy_console(ending: str, db: Path, config: Path, token: str, session: str) -> None:
    """Starts the console, answers some calls, approves one from its modal, opens help, holds another (its
    modal over help), then ends it as `ending` says."""
    port, orchestrator_port = free_port(), free_port()
    detached = ending == "pty closed first"
    command = (f"{'setsid -w' if detached else 'exec'} {MCP_CONSOLE} --sandbox --sandbox-agents 0 --db {db} "
               f"--config {config} --gateway-port {port} --orchestrator-port {orchestrator_port}")
    await console_started(session, command, db.with_suffix(".log"), "orch linked")
    pane = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}"))
    pid = int(Path(f"/proc/{pane}/task/{pane}/children").read_text().split()[0]) if detached else pane
    held_call = {"jsonrpc": "2.0", "id": "held", "method": "mcp.execute",
                 "params": {"service": "coolify", "operation": "restart-application", "args": ["web"],
                            "options": {"waitForApproval": 30}}}  # an approval "once" covers one such call
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20,
                                     headers={"authorization": f"Bearer {token}"}) as client:
            for number in range(CALLS_PER_RUN):
                answer = await client.post("/mcp/rpc", json={"jsonrpc": "2.0", "id": number,
                                                             "method": "mcp.listServices"})
                assert "result" in answer.json()
            approved = asyncio.create_task(client.post("/mcp/rpc", json=held_call))
            await screen_shows(session, "Permission request", "restart-application")
            await asyncio.sleep(DECISION_GUARD)
            tmux("send-keys", "-t", session, "a")
            assert (await approved).json()["result"]["status"] == "success"
            tmux("send-keys", "-t", session, "?")
            await screen_shows(session, "mcp-console keys")
            held = asyncio.create_task(client.post("/mcp/rpc", json=held_call))
            await screen_shows(session, "Permission request", "restart-application")
            if ending.startswith("SIG"):
                os.kill(pid, signal.Signals[ending.split(",")[0]])
            else:
                tmux("kill-session", "-t", session)
            await process_ends(pid, within=5.0, after=ending)
            assert (await held).json()["error"]["data"]["status"] == "gateway_stopping"  # answered, not cut
    finally:
        with contextlib.suppress(ProcessLookupError):  # a console that hung must not outlive its test
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)  # the next run reuses its name
    assert not port_taken(port) and not port_taken(orchestrator_port), "the console's ports are still taken"


def test_without_a_terminal_the_console_refuses_at_once(tmp_path: Path) -> None:
    started = subprocess.run([*COMMAND, "--db", str(tmp_path / "no-tty.db")], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=10)
    assert started.returncode != 0 and "mcp-console serve" in started.stderr, started
