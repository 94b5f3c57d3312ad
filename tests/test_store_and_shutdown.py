"""The store's guarantees, and the ledger surviving a clean stop of a real `mcp-console serve` process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway_core.recorder import Recorder
from gateway_core.store import AuditEvent, CallRecord, SQLiteStore
from gateway_core.store.migrations import MIGRATIONS
from tests.cli import COMMAND, mcp_console
from tests.ports import free_port


async def test_the_store_is_one_wal_file_migrated_once(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    await store.close()
    store = await SQLiteStore.open(tmp_path / "s.db")  # opening again applies nothing twice
    await store.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in db.execute("SELECT version FROM schema_version")]
    assert versions == [version for version, _ in MIGRATIONS]


async def test_processes_opening_a_new_store_at_the_same_moment_migrate_it_once(tmp_path: Path) -> None:
    # `mcp-console serve` and `mcp-console agents add` started together on a fresh file both migrate it. Many
    # rounds: switching a new file to WAL failed at once, now and then, when another opening held it that moment.
    for round_number in range(30):
        path = tmp_path / f"s{round_number}.db"
        stores = await asyncio.gather(*(SQLiteStore.open(path) for _ in range(6)))
        for store in stores:
            await store.close()
        with sqlite3.connect(path) as db:
            versions = [row[0] for row in db.execute("SELECT version FROM schema_version")]
            journal_mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        assert versions == [version for version, _ in MIGRATIONS] and journal_mode == "wal"


async def test_the_audit_log_refuses_edits_and_deletions(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    await store.append_audit(AuditEvent(1.0, "cli:test", "agent.added", "a"))
    await store.close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE audit SET actor = 'someone else'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM audit")


async def test_a_failed_ledger_write_keeps_its_rows_for_the_next_try(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    recorder = Recorder(store)
    rows = [CallRecord(str(n), float(n), "a", "mcp.execute", "s", "o", "success", None, 1.0, 1, 0.1, None)
            for n in range(3)]
    for row in rows:
        recorder.record_call(row)
    real_append = store.append

    async def disk_full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "append", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        await recorder.flush()
    assert recorder.pending == 3
    monkeypatch.setattr(store, "append", real_append)
    await recorder.aclose()
    assert [call.id async for call in store.iter_calls()] == ["0", "1", "2"]
    await store.close()


async def test_a_row_the_store_refuses_is_set_aside_alone_and_the_rows_behind_it_are_written(
        tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    recorder = Recorder(store)
    rows = [CallRecord(str(n), float(n), "a", "mcp.execute", "s", "o", "success", None, 1.0, 1, 0.1, None)
            for n in range(5)]
    poisoned = dataclasses.replace(rows[2], tokens=10 ** 30)  # more than SQLite can hold: refused on its own
    for row in (*rows[:2], poisoned, *rows[3:]):
        recorder.record_call(row)
    recorder.record_audit(AuditEvent(1.0, "test", "still.written"))
    await recorder.flush()
    assert recorder.set_aside == 1 and recorder.pending == 0 and recorder.failing is None
    assert [call.id async for call in store.iter_calls()] == ["0", "1", "3", "4"]
    assert [event.action for event in await store.list_audit()] == ["still.written"]
    await recorder.aclose()
    await store.close()


async def test_ready_answers_503_the_moment_ledger_writes_fail(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    from tests.servers import run_gateway

    async with run_gateway(tmp_path / "gw.db") as gw, httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/ready")).status_code == 200
        real_append = gw.gateway.store.append

        async def locked(*args: object, **kwargs: object) -> None:
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(gw.gateway.store, "append", locked)
        await client.post("/mcp/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "mcp.listServices"})
        with pytest.raises(sqlite3.OperationalError):
            await gw.gateway.recorder.flush()
        failing = await client.get("/ready")
        monkeypatch.setattr(gw.gateway.store, "append", real_append)
        await gw.gateway.recorder.flush()
        recovered = await client.get("/ready")
    assert failing.status_code == 503
    assert failing.json()["checks"]["ledger"]["ok"] is False
    assert failing.json()["checks"]["ledger"]["error"] == "OperationalError: database is locked"
    assert recovered.status_code == 200


async def test_closing_gives_up_on_a_store_that_never_writes_after_its_deadline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = await SQLiteStore.open(tmp_path / "s.db")
    recorder = Recorder(store)
    recorder.start()
    recorder.record_call(CallRecord("1", 1.0, "a", "mcp.execute", "s", "o", "success", None, 1.0, 1, 0.1, None))

    async def full(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "append", full)
    await asyncio.wait_for(recorder.aclose(deadline_seconds=0.5), 10)  # returns, rather than retrying for ever
    assert recorder.pending == 1
    assert "1 ledger and audit rows could not be written" in caplog.text
    await store.close()



async def test_after_sigterm_the_ledger_holds_every_call_that_was_answered(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    token = json.loads((await mcp_console("agents", "add", "load", "--db", db, "--json")).stdout)["token"]
    port = free_port()
    process = subprocess.Popen([*COMMAND, "serve", "--db", str(db), "--port", str(port), "--orchestrator-port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answered: set[str] = set()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"authorization": f"Bearer {token}"}) as client:
            for _ in range(100):
                try:
                    await client.get("/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)

            async def agent(worker: int) -> None:
                for n in range(10_000):
                    rpc_id = f"{worker}-{n}"
                    try:
                        response = await client.post("/mcp/rpc", json={"jsonrpc": "2.0", "id": rpc_id,
                                                                       "method": "mcp.getStatistics"})
                    except httpx.TransportError:
                        return  # the server has stopped
                    if response.status_code == 200 and response.json()["id"] == rpc_id:
                        answered.add(rpc_id)

            workers = [asyncio.create_task(agent(worker)) for worker in range(8)]
            await asyncio.sleep(1.0)
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*workers), 15)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert len(answered) > 50
    with sqlite3.connect(db) as connection:
        recorded = {row[0] for row in connection.execute("SELECT rpc_id FROM calls")}
    assert answered <= recorded, f"{len(answered - recorded)} answered calls missing from the ledger"
    assert process.stderr is not None and "ledger flushed" in process.stderr.read()


def test_gateway_core_never_imports_the_ui() -> None:
    code = ("import sys, gateway_core.cli, gateway_core.server; "
            "print(sorted(m for m in sys.modules if m.startswith(('textual', 'console'))))")
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert modules.strip() == "[]"


async def test_mcp_console_serve_runs_the_gateway_and_our_orchestrator_headless(tmp_path: Path) -> None:
    port, orchestrator_port = free_port(), free_port()
    process = subprocess.Popen([*COMMAND, "serve", "--db", str(tmp_path / "s.db"), "--port", str(port),
                                "--orchestrator-port", str(orchestrator_port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    health = await client.get(f"http://127.0.0.1:{port}/health")
                    orchestrator = await client.get(f"http://127.0.0.1:{orchestrator_port}/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            ready = await client.get(f"http://127.0.0.1:{port}/ready")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    assert health.json()["status"] == "healthy" and orchestrator.json()["status"] == "healthy"
    assert ready.json()["checks"]["orchestrator"]["state"] == "connected"


async def test_help_names_the_console_options_and_the_commands() -> None:
    result = await mcp_console("--help")
    for expected in ("--sandbox", "--sandbox-agents", "--no-gateway", "--read-only", "--gateway-port",
                     "--orchestrator-url", "serve", "agents", "grants", "attach", "mcp-stdio"):
        assert expected in result.stdout


async def test_todays_usage_is_read_back_from_the_ledger_after_a_restart(tmp_path: Path) -> None:
    from tests.servers import run_gateway

    body = {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
            "params": {"service": "echo", "operation": "echo", "args": ["hi"]}}
    async with run_gateway(tmp_path / "gw.db") as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url) as client:
            await client.post("/mcp/rpc", json=body, headers={"authorization": f"Bearer {token}"})
            await client.post("/mcp/rpc", json=body)  # no token: refused, counted, with no caller
        before = (gw.gateway.usage.today.total.calls, gw.gateway.usage.today.total.cost_usd,
                  gw.gateway.usage.today.by_caller[agent_id].calls)
    async with run_gateway(tmp_path / "gw.db") as gw:
        after = (gw.gateway.usage.today.total.calls, gw.gateway.usage.today.total.cost_usd,
                 gw.gateway.usage.today.by_caller[agent_id].calls)
    assert before == after and before[0] == 2 and before[2] == 1
