"""The process always exits, and says why: real `mcp-console` processes meeting a stop signal with a call
held, stores that cannot be used, a missing key, a closed pipe; and the files it makes are its owner's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

from sandbox.coolify import FakeCoolify
from tests.cli import COMMAND, mcp_console
from tests.servers import serve_asgi
from tests.test_console_terminal import free_port


@contextlib.contextmanager
def serving(db: Path, port: int, **environment: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([*COMMAND, "serve", "--db", str(db), "--port", str(port), "--orchestrator-port",
                                str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **environment})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def until_listening(client: httpx.AsyncClient, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if (await client.get("/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, f"mcp-console serve ended: {process.communicate()[1]}"
        assert time.monotonic() < deadline, "mcp-console serve was not ready within 20 s"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def coolify() -> AsyncIterator[dict[str, str]]:
    fake = FakeCoolify()
    async with serve_asgi(fake.app()) as url:
        yield {"COOLIFY_API_URL": url, "COOLIFY_API_TOKEN": fake.token}


async def test_sigterm_answers_a_held_call_at_once_and_the_process_exits(tmp_path: Path) -> None:
    db, port = tmp_path / "held.db", free_port()
    token = json.loads((await mcp_console("agents", "add", "deployer", "--db", db, "--json")).stdout)["token"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
            "params": {"service": "coolify", "operation": "restart-application", "args": ["web"],
                       "options": {"waitForApproval": 100}}}
    async with coolify() as settings, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        with serving(db, port, **settings) as process:
            await until_listening(client, process)
            held = asyncio.create_task(client.post("/mcp/rpc", json=body,
                                                   headers={"authorization": f"Bearer {token}"}))
            await asyncio.sleep(1.0)  # filed, and waiting for an operator
            assert not held.done()
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            answer = await asyncio.wait_for(held, 10)
            exit_code = await asyncio.to_thread(process.wait, 10)
            stopped_after = time.monotonic() - signalled
    error = answer.json()["error"]
    assert answer.status_code == 403 and error["code"] == -32004
    assert error["data"]["status"] == "gateway_stopping" and error["data"]["requestId"]
    assert exit_code == 0 and stopped_after < 8, f"exit {exit_code} after {stopped_after:.1f} s"
    with sqlite3.connect(db) as ledger:
        [status] = ledger.execute("SELECT status FROM calls WHERE operation = 'restart-application'").fetchone()
    assert status == "gateway_stopping"


async def test_a_store_that_cannot_be_used_is_one_line_and_an_exit(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database " * 400)
    a_directory = tmp_path / "a-directory.db"
    a_directory.mkdir()
    for db, says in ((corrupt, "not an SQLite database"), (a_directory, "cannot open the store")):
        for command in (["agents", "list"], ["grants", "list"], ["agents", "add", "x"],
                        ["serve", "--port", str(free_port()), "--orchestrator-port", str(free_port())]):
            result = await asyncio.wait_for(mcp_console(*command, "--db", db, check=False), 30)
            assert result.returncode == 1, (command, result.stderr)
            assert says in result.stderr and str(db) in result.stderr, result.stderr
            assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


async def test_a_store_locked_by_another_process_is_one_line_and_an_exit(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # as another program holding a write transaction open
    try:
        result = await asyncio.wait_for(mcp_console("agents", "list", "--db", db, check=False), 30)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1 and "locked" in result.stderr and "Traceback" not in result.stderr


async def test_a_missing_key_beside_a_store_with_agents_refuses_to_start(tmp_path: Path) -> None:
    db = tmp_path / "keyed.db"
    await mcp_console("agents", "add", "someone", "--db", db)
    key = db.with_name(db.name + ".key")
    key.rename(tmp_path / "elsewhere.key")
    for command in (["serve", "--port", str(free_port()), "--orchestrator-port", str(free_port())],
                    ["agents", "add", "another"]):
        result = await asyncio.wait_for(mcp_console(*command, "--db", db, check=False), 30)
        assert result.returncode == 1 and "would stop working" in result.stderr, result.stderr
    assert not key.exists()  # no new key was made behind the operator's back


async def test_read_commands_never_create_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "x.db"
    for command in (["agents", "list"], ["grants", "list"], ["calls", "export", "--format", "csv"],
                    ["agents", "revoke", "someone"], ["grants", "revoke", "grant_x"]):
        result = await mcp_console(*command, "--db", missing, check=False)
        assert result.returncode == 1 and "there is no store" in result.stderr, result.stderr
    assert not missing.parent.exists()


async def test_the_store_its_wal_its_key_and_exports_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "private" / "p.db"
    await mcp_console("agents", "add", "someone", "--db", db)
    export = tmp_path / "calls.csv"
    await mcp_console("calls", "export", "--format", "csv", "--output", export, "--db", db)
    writer = sqlite3.connect(db)  # while a connection is open, the WAL and shared-memory files exist
    writer.execute("INSERT INTO audit (ts, actor, action) VALUES (0, 'test', 'test')")
    writer.commit()
    try:
        files = [db, db.with_name("p.db-wal"), db.with_name("p.db-shm"), db.with_name("p.db.key"), export]
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
    finally:
        writer.close()
    assert modes == dict.fromkeys(modes, 0o600), modes
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


async def test_an_export_over_a_readable_file_makes_it_private_and_a_planted_link_is_refused(tmp_path: Path) -> None:
    """The mode asked for applies to a new file only: an existing one stayed readable by all; and a symbolic link
    at the path had the export overwrite whatever it pointed to."""
    db = tmp_path / "e.db"
    await mcp_console("agents", "add", "someone", "--db", db)
    readable = tmp_path / "calls.csv"
    readable.write_text("old")
    readable.chmod(0o644)
    await mcp_console("calls", "export", "--format", "csv", "--output", readable, "--db", db)
    victim = tmp_path / "victim.txt"
    victim.write_text("kept")
    (tmp_path / "link.csv").symlink_to(victim)
    refused = await mcp_console("calls", "export", "--format", "csv", "--output", tmp_path / "link.csv", "--db", db,
                                check=False)
    assert stat.S_IMODE(readable.stat().st_mode) == 0o600 and readable.read_text().startswith("id,time")
    assert refused.returncode != 0 and "is a symbolic link" in refused.stderr and victim.read_text() == "kept"


async def test_serve_on_a_taken_port_names_the_port_and_the_flag(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = await mcp_console("serve", "--db", tmp_path / "s.db", "--port", str(port), "--orchestrator-port",
                                    "0", check=False)
    assert refused.returncode == 1, refused.stderr
    assert f"cannot listen on 127.0.0.1:{port}: " in refused.stderr and "--port names another port" in refused.stderr


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    db = tmp_path / "pipe.db"
    subprocess.run([*COMMAND, "agents", "add", "someone", "--db", str(db)], check=True, capture_output=True)
    with sqlite3.connect(db) as ledger:  # far more than a pipe holds, so the writer meets the closed end
        ledger.executemany("INSERT INTO calls (id, ts, status, duration_ms, tokens, cost_usd) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(f"call-{number}", number, "success", 1.0, 200, 0.0006) for number in range(5000)])
    pipeline = subprocess.run(f"{' '.join(COMMAND)} calls export --format jsonl --db {db} | head -c 1 >/dev/null; "
                              "echo ${PIPESTATUS[0]} >&2", shell=True, executable="/bin/bash",
                              capture_output=True, text=True, timeout=60)
    assert "Traceback" not in pipeline.stderr and "BrokenPipe" not in pipeline.stderr, pipeline.stderr
    assert pipeline.stderr.strip().splitlines() == ["141"]


def test_a_log_line_quotes_others_text_without_anything_a_terminal_would_act_on() -> None:
    """What the gateway and the console log with (configure_logging), in a process of its own: a quoted text
    with a screen-clearing sequence and a newline stays one line, written out; a traceback keeps its lines."""
    program = "\n".join([
        "import logging, sys",
        "from gateway_core.logs import configure_logging",
        "configure_logging(logging.INFO, stream=sys.stderr)",
        "logging.getLogger('upstream').warning('it said %s', '\\x1b[2J\\n2026-01-01 00:00:00 INFO forged: line')",
        "logging.getLogger('mcp.server.streamable_http').info('Terminating session: None')  # each request's",
        "try:",
        "    raise ValueError('boom')",
        "except ValueError:",
        "    logging.getLogger('x').exception('failed')",
    ])
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    lines = result.stderr.splitlines()
    assert lines[0].endswith(" WARNING upstream: it said \\x1b[2J\\n2026-01-01 00:00:00 INFO forged: line")
    assert lines[1].endswith(" ERROR x: failed") and lines[2] == "Traceback (most recent call last):"
    assert "\x1b" not in result.stderr
    assert len(lines) == 5  # the warning, the error and its three lines of traceback
