"""Agent credentials and grants, managed with the CLI against the store a running gateway uses."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from gateway_core.cli import parse_duration
from tests.cli import mcp_console
from tests.servers import run_gateway
from tests.test_wire_contract import execute


async def _wait_for_status(url: str, token: str, body: dict[str, object], status: int, within: float) -> float:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"}) as client:
        while True:
            response = await client.post("/mcp/rpc", json=body)
            elapsed = time.monotonic() - started
            if response.status_code == status:
                return elapsed
            assert elapsed < within, f"still {response.status_code} after {elapsed:.1f} s: {response.text}"
            await asyncio.sleep(0.05)


async def test_agents_add_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    added = json.loads((await mcp_console("agents", "add", "deployer", "--id", "deploy-1", "--db", db,
                                          "--json")).stdout)
    assert set(added) == {"id", "name", "token"}
    assert added["id"] == "deploy-1" and added["name"] == "deployer"
    assert added["token"].encode() not in db.read_bytes()
    for sidecar in tmp_path.iterdir():  # the WAL and the key file too
        assert added["token"].encode() not in sidecar.read_bytes()
    assert (tmp_path / "store.db.key").stat().st_mode & 0o777 == 0o600
    listed = (await mcp_console("agents", "list", "--db", db)).stdout
    assert "deploy-1" in listed and added["token"] not in listed
    duplicate = await mcp_console("agents", "add", "again", "--id", "deploy-1", "--db", db, check=False)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    # An operator's calls are recorded as `operator:<name>`: an agent so named would pass for one.
    posing = await mcp_console("agents", "add", "eve", "--id", "operator:alice", "--db", db, check=False)
    assert posing.returncode != 0 and "cannot begin with 'operator:'" in posing.stderr


async def test_a_new_agent_works_on_a_running_gateway_within_two_seconds_and_revoking_stops_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    async with run_gateway(db) as gw:
        added = json.loads((await mcp_console("agents", "add", "late", "--db", db, "--json")).stdout)
        statistics = {"jsonrpc": "2.0", "id": 1, "method": "mcp.getStatistics"}
        assert await _wait_for_status(gw.url, added["token"], statistics, 200, within=2.0) < 2.0
        await mcp_console("agents", "revoke", added["id"], "--db", db)
        assert await _wait_for_status(gw.url, added["token"], statistics, 401, within=2.0) < 2.0
        await gw.gateway.recorder.flush()
        actions = [event.action for event in await gw.gateway.store.list_audit()]
    assert "agent.added" in actions and "agent.revoked" in actions and "auth.failed" in actions


async def test_a_grant_takes_effect_within_five_seconds_and_revoking_it_ends_it(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    async with run_gateway(db) as gw:
        agent_id, token = await gw.add_agent()
        call = execute("echo", "echo", ["hi"])
        assert await _wait_for_status(gw.url, token, call, 403, within=1.0) < 1.0
        out = (await mcp_console("grants", "add", agent_id, "echo", "--operation", "echo", "--expires-in", "1h",
                                 "--db", db, check=False))
        # echo is a test service: the CLI knows only the real catalog, so it refuses it
        assert out.returncode == 2 and "unknown service" in out.stderr
        # ...and the test grants it through the store, as an orchestrator would
        await gw.gateway.store.add_grant(agent_id, "echo", None, time.time() + 3600, "test")
        assert await _wait_for_status(gw.url, token, call, 200, within=5.0) < 5.0
        grant_id = json.loads((await mcp_console("grants", "list", "--db", db, "--json")).stdout)[0]["id"]
        await mcp_console("grants", "revoke", grant_id, "--db", db)
        assert await _wait_for_status(gw.url, token, call, 403, within=5.0) < 5.0


async def test_grants_cli_adds_lists_and_revokes(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    agent = json.loads((await mcp_console("agents", "add", "ops", "--db", db, "--json")).stdout)
    added = await mcp_console("grants", "add", agent["id"], "gh", "--expires-in", "8h", "--db", db)
    assert "github" in added.stdout
    [grant] = json.loads((await mcp_console("grants", "list", "--db", db, "--json")).stdout)
    assert grant["service"] == "github" and grant["operation"] == "*" and grant["expires_at"]
    unknown_agent = await mcp_console("grants", "add", "ghost", "github", "--db", db, check=False)
    assert unknown_agent.returncode == 1 and "unknown agent" in unknown_agent.stderr
    bad_duration = await mcp_console("grants", "add", agent["id"], "github", "--expires-in", "soon", "--db", db,
                                     check=False)
    assert bad_duration.returncode == 2 and "duration" in bad_duration.stderr
    await mcp_console("grants", "revoke", grant["id"], "--db", db)
    assert json.loads((await mcp_console("grants", "list", "--db", db, "--json")).stdout) == []
    everything = json.loads((await mcp_console("grants", "list", "--all", "--db", db, "--json")).stdout)
    assert everything[0]["revoked_at"]
    again = await mcp_console("grants", "revoke", grant["id"], "--db", db, check=False)
    assert again.returncode == 1


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400),
                                               ("2d", 172800)])
def test_durations_read_like_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


async def test_the_agent_header_alone_is_refused_unless_trusted_on_purpose(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "mcp.getStatistics"}
    async with run_gateway(tmp_path / "a.db") as gw:
        agent_id, _ = await gw.add_agent()
        async with httpx.AsyncClient(base_url=gw.url) as client:
            refused = await client.post("/mcp/rpc", json=call, headers={"x-agent-id": agent_id})
    assert refused.status_code == 401
    with caplog.at_level(logging.WARNING):
        async with run_gateway(tmp_path / "b.db", auth={"trust_agent_header": True}) as gw:
            agent_id, _ = await gw.add_agent()
            async with httpx.AsyncClient(base_url=gw.url) as client:
                trusted = await client.post("/mcp/rpc", json=call, headers={"x-agent-id": agent_id})
                stranger = await client.post("/mcp/rpc", json=call, headers={"x-agent-id": "nobody"})
    assert trusted.status_code == 200
    assert stranger.status_code == 401
    assert any("trust_agent_header is on" in record.message for record in caplog.records)


async def test_calls_export_writes_every_row_as_csv_or_json_lines(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    async with run_gateway(db) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            for n in range(3):
                await client.post("/mcp/rpc", json=execute("echo", "echo", [f"m{n}"]))
            await client.post("/mcp/rpc", json=execute("echo", "nope"))
    lines = (await mcp_console("calls", "export", "--format", "jsonl", "--db", db)).stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["status"] for row in rows] == ["success"] * 3 + ["error"]
    assert rows[-1]["error_code"] == -32002 and rows[0]["time"].endswith("Z")
    out = tmp_path / "calls.csv"
    await mcp_console("calls", "export", "--format", "csv", "--output", out, "--db", db)
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(table) == 4 and table[0]["agent_id"] == agent_id and table[0]["tokens"] == "100"
    assert table[-1]["error_code"] == "-32002"  # a number stays a number


async def test_a_csv_export_never_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    """An agent chooses its request's id and the service it names: `=HYPERLINK(...)` in one is a formula to
    whoever opens the export."""
    db = tmp_path / "gw.db"
    async with run_gateway(db) as gw:
        _, token = await gw.add_agent()
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            body = execute("=HYPERLINK(\"http://x\")", "echo", ["hi"])
            body["id"] = "@SUM(1+1)"
            await client.post("/mcp/rpc", json=body)
    out = tmp_path / "calls.csv"
    await mcp_console("calls", "export", "--format", "csv", "--output", out, "--db", db)
    [row] = list(csv.DictReader(io.StringIO(out.read_text())))
    assert row["service"] == "'=HYPERLINK(\"http://x\")" and row["rpc_id"] == "'@SUM(1+1)", row


async def test_help_explains_every_command() -> None:
    usage = (await mcp_console("--help")).stdout
    for command in ("serve", "agents", "grants", "calls"):
        assert command in usage
    grants_help = (await mcp_console("grants", "add", "--help")).stdout
    assert "--expires-in" in grants_help and "--operation" in grants_help
    # Each command's own --help says what it does, and what its positional arguments are.
    assert "let an agent use a service" in grants_help and "the agent's id (agents list)" in grants_help
    assert "run the gateway headless" in (await mcp_console("serve", "--help")).stdout


async def test_operators_add_prints_the_orchestrator_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    added = json.loads((await mcp_console("operators", "add", "alice", "--db", db, "--json")).stdout)
    assert set(added) == {"id", "name", "token"} and added["token"].startswith("mcpo_")
    assert added["token"].encode() not in db.read_bytes()
    plain = await mcp_console("operators", "add", "bob", "--db", db)
    assert "token: mcpo_" in plain.stdout and "will not be shown again" in plain.stderr
