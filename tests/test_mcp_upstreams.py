"""MCP upstreams (mcp.md §3) from the outside: the test server (tests/mcp_servers/testsrv.py, written with the
SDK) as `[mcp_servers.testsrv]`, started by the gateway over stdio or dialled over Streamable HTTP on 127.0.0.1,
and agents calling its tools through `mcp.execute` and the slash form on the gateway's real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gateway_core.events import GatewayEvent, HealthChecked, ToolsListed
from gateway_core.gateway import Gateway
from gateway_core.mcp_upstreams import child as child_module
from gateway_core.mcp_upstreams.child import MAX_BACKOFF_SECONDS, backoff_seconds
from gateway_core.operations import OperationTable
from gateway_core.operator_client import RemoteGateway
from gateway_core.store import CallRecord, SQLiteStore
from gateway_core.upstream_tool import UpstreamTool
from tests.agent_client import AgentClient
from tests.servers import DroppingProxy, LinkedGateway, RunningGateway, run_gateway, run_linked
from tests.test_permission_loop import until

TESTSRV = (sys.executable, str(Path(__file__).parent / "mcp_servers" / "testsrv.py"))
STARTS = 30.0  # seconds a test waits for a child to start (it imports the SDK: about a second, more on a busy CI)


def stdio(**extra: Any) -> dict[str, Any]:
    """`[mcp_servers.testsrv]` starting the test server over stdio."""
    return {"testsrv": {"command": list(TESTSRV), **extra}}


@contextlib.asynccontextmanager
async def http_testsrv(*flags: str) -> AsyncIterator[int]:
    """The test server over Streamable HTTP on a free loopback port (`--stateless`, `--key KEY`): its port."""
    process = await asyncio.create_subprocess_exec(*TESTSRV, "--http", *flags, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(STARTS):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("listening on "), line
        yield int(line.split()[-1])
    finally:
        process.terminate()
        await process.wait()


async def listed(gateway: Gateway, tool: str = "add") -> None:
    await until(lambda: tool in gateway.services["testsrv"].operations, STARTS)


async def healthy(gateway: Gateway) -> None:
    await until(lambda: (report := gateway.health.reports.get("testsrv")) is not None and report.status == "healthy",
                STARTS)


async def agent(running: RunningGateway, grant: bool = True) -> AgentClient:
    agent_id, token = await running.add_agent()
    if grant:
        await running.grant(agent_id, "testsrv")
    return AgentClient(running.url, token, "testsrv")


async def describe(client: AgentClient) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=client.url, headers={"authorization": f"Bearer {client.token}"}) as http:
        response = await http.get("/mcp/service/testsrv")
    assert response.status_code == 200, response.text
    described: dict[str, Any] = response.json()
    return described


async def ledger(gateway: Gateway) -> list[CallRecord]:
    await gateway.recorder.flush()
    return list(reversed(await gateway.store.recent_calls(1000)))


def health_statuses(gateway: Gateway) -> list[str]:
    """Every status testsrv's health changes to from now on, in order."""
    statuses: list[str] = []

    def heard(event: GatewayEvent) -> None:
        if isinstance(event, HealthChecked) and event.service == "testsrv" and event.status_changed:
            statuses.append(event.current.status)

    gateway.events.listen(heard)
    return statuses


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_importing_the_gateway_leaves_the_sdk_unimported() -> None:
    """The console imports gateway.py on its way to its first frame: the SDK (about a second) must not come with
    it, nor jsonschema; they are imported when an upstream starts, in a thread."""
    probe = ("import sys, gateway_core.gateway\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types', 'httpx2', 'jsonschema')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_restarts_back_off_doubling_to_a_minute_with_jitter() -> None:
    assert 0.8 <= backoff_seconds(0) <= 1.2
    assert 1.6 <= backoff_seconds(1) <= 2.4
    assert 3.2 <= backoff_seconds(2) <= 4.8
    assert 0.8 * MAX_BACKOFF_SECONDS <= backoff_seconds(40) <= 1.2 * MAX_BACKOFF_SECONDS


async def test_stdio_tools_are_operations_with_their_schemas_and_risks_and_calls_are_ledgered(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio(risk={"note": "read"})) as running:
        client = await agent(running)
        await listed(running.gateway)
        described = await describe(client)
        added = await client.result("add", {"a": 2, "b": 3})
        positional = await client.data("add", [4, 5])
        sliced = (await client.slash("/mcp-testsrv add 6 7")).json()
        rows = await ledger(running.gateway)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{running.url}/metrics")).text
    operations = {operation["name"]: operation for operation in described["operations"]}
    assert {name: operations[name]["risk"] for name in ("add", "note", "wipe", "env")} == {
        "add": "read", "note": "read", "wipe": "destructive", "env": "read"}  # note: the config's word, over none
    assert operations["add"]["inputSchema"]["required"] == ["a", "b"]
    assert operations["add"]["inputSchema"]["properties"]["a"]["type"] == "integer"
    assert operations["add"]["arguments"] == ["a", "b"]
    assert added["data"] == {"content": [{"type": "text", "text": "5"}], "structuredContent": {"result": 5}}
    assert positional["structuredContent"] == {"result": 9}
    assert sliced["result"]["data"]["structuredContent"] == {"result": 13}, sliced
    calls = [(row.service, row.operation, row.status, row.via, row.tokens) for row in rows if row.service == "testsrv"]
    assert calls == [("testsrv", "add", "success", "rpc", 300)] * 2 + [("testsrv", "add", "success", "slash", 300)]
    assert 'mcp_operations_total{operation="add",service="testsrv",status="success"} 3.0' in metrics


async def test_an_unannotated_tool_is_a_write_and_the_upstreams_errors_are_the_gateways(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio(timeout_seconds=1.0)) as running:
        client = await agent(running)
        await listed(running.gateway)
        risks = {operation["name"]: operation["risk"] for operation in (await describe(client))["operations"]}
        failed = await client.error("boom")
        picture = await client.data("picture")
        pid = (await client.data("env"))["structuredContent"]["pid"]
        timed_out = await client.error("slow", {"seconds": 30})
        survived = (await client.data("env"))["structuredContent"]["pid"]
    assert (risks["note"], risks["add"], risks["wipe"]) == ("write", "read", "destructive")
    assert failed["code"] == -32009 and "the tool failed on purpose" in failed["message"]
    assert failed["data"]["content"][0]["type"] == "text"
    assert picture["content"][0]["type"] == "image" and picture["content"][0]["mimeType"] == "image/png"
    assert timed_out["code"] == -32006
    assert survived == pid  # the call timed out; the upstream lives on


async def test_bad_arguments_are_refused_before_any_permission_is_asked(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", mcp_servers=stdio()) as linked:
        _, token = await linked.add_agent()
        client = AgentClient(linked.url, token, "testsrv")
        await listed(linked.gateway)
        empty = await client.error("note", {"text": ""})
        wrong = await client.error("add", {"a": "two", "b": 3})
        missing = await client.error("add", {})
        nothing_filed = await linked.gateway.store.list_permission_requests("pending")
        asked = await client.error("note", {"text": "fine"})  # the same call, valid: now a permission is asked
        filed = await linked.gateway.store.list_permission_requests("pending")
    assert empty["code"] == -32602 and empty["data"]["errors"][0]["field"] == "text"
    assert [(error["field"], error["type"]) for error in wrong["data"]["errors"]] == [("a", "type")]
    assert "two" not in wrong["message"]  # the value is not echoed
    # Each missing name once (jsonschema's error for each listed them all: n missing made n² entries).
    assert [(error["field"], error["type"]) for error in missing["data"]["errors"]] == [("a", "missing"),
                                                                                        ("b", "missing")]
    assert missing["message"].endswith("a: Field required; b: Field required")
    assert nothing_filed == []
    assert asked["code"] == -32004 and [(r.id, r.service, r.operation) for r in filed] == [
        (asked["data"]["requestId"], "testsrv", "note")]


async def test_a_crashed_upstream_is_restarted_and_its_health_goes_down_and_up(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        client = await agent(running)
        await healthy(running.gateway)
        statuses = health_statuses(running.gateway)
        first = (await client.data("env"))["structuredContent"]["pid"]
        crashed = await client.error("crash")
        await until(lambda: statuses[-1:] == ["healthy"], STARTS)
        second = (await client.data("env"))["structuredContent"]["pid"]
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{running.url}/metrics")).text
    assert crashed["code"] == -32001 and crashed["data"]["mayHaveRun"] is True
    assert statuses[0] != "healthy" and statuses[-1] == "healthy"
    assert gone(first) and second != first
    assert 'mcp_upstream_restarts_total{service="testsrv"} 1.0' in metrics


async def test_a_read_whose_connection_is_lost_is_asked_again_once_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        client = await agent(running)
        await listed(running.gateway)
        first = (await client.data("env"))["structuredContent"]["pid"]
        answered = await client.data("crash_once", {"marker": str(marker)})
        second = (await client.data("env"))["structuredContent"]["pid"]
        rows = await ledger(running.gateway)
    assert answered["structuredContent"] == {"result": "answered after a restart"}
    assert marker.exists() and gone(first) and second != first  # it did crash, and the new process answered
    assert [(row.operation, row.status) for row in rows] == [("env", "success"), ("crash_once", "success"),
                                                             ("env", "success")]


async def test_per_agent_isolation_gives_each_agent_its_own_child(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio(isolation="per_agent")) as running:
        alice, bob = await agent(running), await agent(running)
        await listed(running.gateway)
        alices = [(await alice.data("env"))["structuredContent"]["pid"] for _ in range(2)]
        bobs = (await bob.data("env"))["structuredContent"]["pid"]
    assert alices[0] == alices[1] and bobs != alices[0]  # one child per agent, kept between its calls
    assert gone(alices[0]) and gone(bobs)  # each stopped with the gateway


async def test_a_risk_a_new_listing_changes_is_taken_logged_and_audited(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway_core.mcp.testsrv")
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        client = await agent(running)
        await listed(running.gateway)
        state = running.gateway.services["testsrv"]  # its operations: the live table, a new one each listing
        await client.data("grow", {"name": "sprout"})
        await listed(running.gateway, "sprout")
        before = state.operations["sprout"].risk
        await client.data("grow", {"name": "sprout", "destructive": True})
        await until(lambda: state.operations["sprout"].risk == "destructive", STARTS)
        await running.gateway.recorder.flush()  # the audit log is written in batches
        audit = [event for event in await running.gateway.store.list_audit(50)
                 if event.action == "mcp.tool_risk_changed"]
    assert before == "read"
    assert [(event.actor, event.subject, event.detail) for event in audit] == [
        ("mcp:testsrv", "testsrv.sprout", {"service": "testsrv", "tool": "sprout", "before": "read",
                                           "after": "destructive"})]
    assert "tool sprout is now destructive (was read)" in caplog.text


async def test_a_tool_named_with_any_character_is_listed_and_listings_go_on(tmp_path: Path) -> None:
    """A NUL in a tool's name made its form model fail (no class name holds one): the listing failed, and every
    later one with it, so the server's new tools never came."""
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        client = await agent(running)
        await listed(running.gateway)
        await client.data("grow", {"name": "odd\x00\x1b[2J one"})
        await listed(running.gateway, "odd\x00\x1b[2J one")
        await client.data("grow", {"name": "after"})
        await listed(running.gateway, "after")


async def kept_tools(store: SQLiteStore) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = json.loads((await store.mcp_tools())["testsrv"][1])
    return tools


async def test_a_listing_the_store_refuses_serves_is_logged_and_later_listings_are_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The listing runs in a task nobody awaits: its failure was "Task exception was never retrieved" at best."""
    caplog.set_level(logging.INFO, logger="gateway_core.mcp.testsrv")
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        client = await agent(running)
        await listed(running.gateway)
        store = running.gateway.store
        keep = store.save_mcp_tools

        async def full_disk(service: str, tools_json: str) -> None:  # a disk failure cannot be made here
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(store, "save_mcp_tools", full_disk)
        await client.data("grow", {"name": "sprout"})
        await listed(running.gateway, "sprout")
        await until(lambda: "taking the new tool listing failed" in caplog.text, STARTS)
        kept_while_full = await kept_tools(store)
        monkeypatch.setattr(store, "save_mcp_tools", keep)
        await client.data("grow", {"name": "after"})
        await listed(running.gateway, "after")
        async with asyncio.timeout(STARTS):
            while "after" not in (kept_after := {tool["name"] for tool in await kept_tools(store)}):
                await asyncio.sleep(0.02)
    assert "OperationalError: database or disk is full" in caplog.text
    assert "sprout" not in [tool["name"] for tool in kept_while_full] and "sprout" in kept_after


def test_a_tool_that_cannot_be_declared_is_left_out_and_the_others_listed(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from gateway_core.config import McpServerSettings
    from gateway_core.mcp_upstreams.tools import tools_table

    declare = UpstreamTool.declare

    def refusing(name: str, *args: Any, **kwargs: Any) -> UpstreamTool:
        if name == "bad":
            raise ValueError("a description we cannot take")
        return declare(name, *args, **kwargs)

    monkeypatch.setattr(UpstreamTool, "declare", refusing)
    schema = {"type": "object", "properties": {}}
    table = tools_table([{"name": name, "inputSchema": schema} for name in ("first", "bad", "last")],
                        McpServerSettings(command=["x"]), logging.getLogger("test"))
    assert list(table) == ["first", "last"]
    assert "tool 'bad' cannot be declared (ValueError: a description we cannot take): left out" in caplog.text


async def test_measured_cost_counts_what_a_tool_call_put_into_the_context(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio(), cost={"mode": "measured"}) as running:
        client = await agent(running)
        await listed(running.gateway)
        added = await client.result("add", {"a": 2, "b": 3})
        picture = await client.result("picture")
    # The arguments' JSON and the text block (its structured twin not counted again), four characters a token.
    assert added["metadata"]["tokensUsed"] == math.ceil((len('{"a":2,"b":3}') + len("5")) / 4)
    assert added["metadata"]["cost"] == pytest.approx(added["metadata"]["tokensUsed"] * 3.0 / 1_000_000)
    # An image block counts as 4,000 characters, whatever its size.
    assert [block["type"] for block in picture["data"]["content"]] == ["image"]
    assert picture["metadata"]["tokensUsed"] == math.ceil((len("{}") + 4000) / 4)


async def test_an_sdk_that_cannot_be_loaded_leaves_the_upstream_down_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken_install() -> None:  # what a damaged environment does; it cannot be made to happen here
        raise ImportError("cannot import name 'Server' from partially initialized module 'mcp.server'")

    monkeypatch.setattr(child_module, "_connection_module", broken_install)
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        await until(lambda: (report := running.gateway.health.reports.get("testsrv")) is not None
                    and report.status == "down", STARTS)
        report = running.gateway.health.reports["testsrv"]
    # Stopping returned (the supervision had ended instead of dying with the error), and the screen says why.
    assert report.message.startswith("the MCP SDK could not be loaded (cannot import name 'Server'")


async def test_a_listed_change_brings_the_new_tool_and_a_tool_found_gone_goes(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        client = await agent(running)
        await listed(running.gateway)
        operations = running.gateway.services["testsrv"]
        before = "sprout" in operations.operations
        grew = await client.data("grow", {"name": "sprout"})
        await listed(running.gateway, "sprout")
        said = await client.data("sprout", {"text": "hi"})
        risk = operations.operations["sprout"].risk
        await client.data("shrink", {"name": "wipe"})  # the server does not say so: the next call finds out
        missing = await client.error("wipe", {"target": "x"})
        await until(lambda: "wipe" not in operations.operations, STARTS)
    assert not before and grew["structuredContent"] == {"result": "grew sprout"}
    assert said["structuredContent"] == {"result": "sprout says hi"} and risk == "read"
    assert missing["code"] == -32002


async def test_a_child_gets_no_gateway_secret_logs_its_stderr_and_is_gone_after_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("COOLIFY_API_TOKEN", "coolify-secret-value")
    monkeypatch.setenv("N8N_API_KEY", "n8n-secret-value")
    monkeypatch.setenv("TESTSRV_GREETING", "hello")
    caplog.set_level(logging.INFO, logger="gateway_core.mcp.testsrv")
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio(env={"GREETING": "${TESTSRV_GREETING}"})) as running:
        client = await agent(running)
        await listed(running.gateway)
        seen = (await client.data("env"))["structuredContent"]
        alive_while_running = not gone(seen["pid"])
    environ: dict[str, str] = seen["environ"]
    assert environ["GREETING"] == "hello"
    assert set(environ) - {"GREETING", "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LC_CTYPE"} == set()
    assert not any(secret in value for value in environ.values()
                   for secret in ("coolify-secret-value", "n8n-secret-value", client.token))
    assert f"testsrv: started, pid {seen['pid']}" in caplog.text  # its stderr, in the log
    assert alive_while_running and gone(seen["pid"])


async def test_a_servers_own_key_echoed_by_it_reaches_neither_the_agent_nor_the_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The scrubber knew the top-level settings only: an MCP server's key, in its env or headers, came back to the
    agent in the server's error and went into the log with its stderr."""
    monkeypatch.setenv("TESTSRV_KEY", "testsrv-key-8c1f3a")
    caplog.set_level(logging.INFO, logger="gateway_core.mcp.testsrv")
    env = {"TOKEN": "Bearer ${TESTSRV_KEY}", "LOG_LEVEL": "info", "SERVICE_KEY": "svc-literal-7d2e"}
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio(env=env)) as running:
        client = await agent(running)
        await listed(running.gateway)
        refused = await client.error("refuse", {"message": "the key testsrv-key-8c1f3a is not valid; information: "
                                                           "svc-literal-7d2e"})
        await until(lambda: "refusing: the key" in caplog.text, STARTS)
    # What came from the environment and what a secret's name holds are masked; a plain value ("info") is not.
    assert refused["code"] == -32009, refused
    assert "the key ******** is not valid; information: ********" in refused["message"], refused
    assert "testsrv-key-8c1f3a" not in caplog.text and "refusing: the key ******** is not valid" in caplog.text


async def test_a_restarted_gateway_serves_the_kept_listing_before_the_child_answers(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        await listed(running.gateway)
    # The same service, now a program that never answers: its tools are known (and checked) from the store.
    silent = {"testsrv": {"command": [sys.executable, "-c", "import time; time.sleep(600)"]}}
    async with run_gateway(tmp_path / "gw.db", mcp_servers=silent) as running:
        client = await agent(running)
        known = "add" in running.gateway.services["testsrv"].operations
        risks = {operation["name"]: operation["risk"] for operation in (await describe(client))["operations"]}
        refused = await client.error("add", {"a": "x", "b": 1})
        live = running.gateway.services["testsrv"].upstream
    assert known and risks["add"] == "read" and risks["wipe"] == "destructive"
    assert refused["code"] == -32602
    assert live is not None and not live.listed_live


async def test_a_catalog_service_runs_its_variables_command_and_a_missing_variable_is_named(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADCN_MCP_COMMAND", " ".join(TESTSRV))
    lacking = {"docs": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}}
    async with run_gateway(tmp_path / "gw.db", mcp_servers=lacking) as running:
        agent_id, token = await running.add_agent()
        await running.grant(agent_id, "shadcn")
        await until(lambda: "add" in running.gateway.services["shadcn"].operations, STARTS)
        added = await AgentClient(running.url, token, "shadcn").data("add", {"a": 1, "b": 1})
        docs = await AgentClient(running.url, token, "docs").error("search", {"q": "x"})
        unset, undefined = running.gateway.services["magicui"], running.gateway.services["docs"]
    assert added["structuredContent"] == {"result": 2}
    assert unset.handler is None and unset.missing_settings == ["MAGICUI_MCP_COMMAND"]
    assert undefined.handler is None and undefined.missing_settings == ["DOCS_TOKEN"]  # a ${VAR} not set
    assert docs["code"] == -32001 and docs["data"]["status"] == "not_configured"


async def test_http_upstream_with_its_key_in_a_header_and_list_changed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTSRV_KEY", "right-key")
    async with http_testsrv("--key", "right-key") as port:
        servers = {"testsrv": {"url": f"http://127.0.0.1:{port}/mcp",
                               "headers": {"Authorization": "Bearer ${TESTSRV_KEY}"}}}
        async with run_gateway(tmp_path / "gw.db", mcp_servers=servers) as running:
            client = await agent(running)
            await listed(running.gateway)
            risks = {operation["name"]: operation["risk"] for operation in (await describe(client))["operations"]}
            added = await client.data("add", {"a": 20, "b": 22})
            await client.data("grow", {"name": "leaf"})
            await listed(running.gateway, "leaf")
            leaf = await client.data("leaf", {"text": "green"})
            rows = await ledger(running.gateway)
    assert (risks["add"], risks["note"], risks["wipe"]) == ("read", "write", "destructive")
    assert added["structuredContent"] == {"result": 42}
    assert leaf["structuredContent"] == {"result": "leaf says green"}
    assert [(row.operation, row.status) for row in rows if row.service == "testsrv"] == [
        ("add", "success"), ("grow", "success"), ("leaf", "success")]


async def test_http_upstream_refusing_our_key_is_the_gateways_error(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTSRV_KEY", "wrong-key")
    async with http_testsrv("--stateless", "--key", "right-key") as port:
        servers = {"testsrv": {"url": f"http://127.0.0.1:{port}/mcp",
                               "headers": {"Authorization": "Bearer ${TESTSRV_KEY}"}}}
        async with run_gateway(tmp_path / "gw.db", mcp_servers=servers) as running:
            client = await agent(running)
            refused = await client.error("add", {"a": 1, "b": 2})
    assert refused["code"] == -32001 and "refused our credentials" in refused["message"]
    assert "wrong-key" not in str(refused)


async def test_an_http_upstream_out_of_reach_is_down_then_up_when_it_answers(tmp_path: Path) -> None:
    async with http_testsrv("--stateless") as port, DroppingProxy(port) as proxy:
        proxy.refusing = True
        async with run_gateway(tmp_path / "gw.db", mcp_servers={"testsrv": {"url": f"{proxy.url}/mcp"}}) as running:
            client = await agent(running)
            statuses = health_statuses(running.gateway)
            await until(lambda: "down" in statuses, STARTS)
            while_down = await client.error("add", {"a": 1, "b": 2})
            proxy.refusing = False
            await until(lambda: statuses[-1:] == ["healthy"], STARTS)
            added = await client.data("add", {"a": 1, "b": 2})
    assert while_down["code"] == -32001
    assert statuses[statuses.index("down"):] == ["down", "healthy"]
    assert added["structuredContent"] == {"result": 3}


async def test_an_upstream_tool_is_listed_and_called_at_the_front_door(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as running:
        client = await agent(running)
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {client.token}"})
        async with http, Client(streamable_http_client(f"{running.url}/mcp", http_client=http)) as mcp:
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
            result = await mcp.call_tool("testsrv_add", {"a": 2, "b": 40})
        rows = await ledger(running.gateway)
    add = tools["testsrv_add"]
    assert add.input_schema["required"] == ["a", "b"] and add.annotations is not None
    assert (add.annotations.read_only_hint, add.annotations.destructive_hint) == (True, False)
    assert tools["testsrv_note"].annotations is not None and tools["testsrv_note"].annotations.read_only_hint is False
    assert result.is_error is not True and result.structured_content == {"result": 42}
    assert [block.model_dump(exclude_none=True) for block in result.content] == [{"type": "text", "text": "42"}]
    assert [(row.operation, row.method, row.via) for row in rows if row.service == "testsrv"] == [
        ("add", "tools/call", "mcp")]


@contextlib.asynccontextmanager
async def attached_to(linked: LinkedGateway) -> AsyncIterator[RemoteGateway]:
    """A console's view of `linked` once testsrv listed its tools, attached as its operator."""
    await listed(linked.gateway)
    assert linked.operator_token is not None
    remote = RemoteGateway(linked.url, linked.operator_token)
    await remote.connect()
    try:
        yield remote
    finally:
        await remote.aclose()


def operations_of_testsrv(remote: RemoteGateway) -> OperationTable:
    return next(view for view in remote.services() if view.name == "testsrv").operations


async def test_an_attached_console_learns_a_new_listing_as_it_happens(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", mcp_servers=stdio()) as linked, attached_to(linked) as remote:
        events = remote.subscribe()
        before = set(operations_of_testsrv(remote))
        await remote.run("testsrv", "grow", {"name": "sprout"})
        await until(lambda: "sprout" in operations_of_testsrv(remote), STARTS)
        sprout = operations_of_testsrv(remote)["sprout"]
        heard = [event for event in iter(events.get_nowait, None) if isinstance(event, ToolsListed)]
        events.close()
    assert "sprout" not in before and isinstance(sprout, UpstreamTool) and sprout.risk == "read"
    assert [(event.service, "sprout" in {tool.name for tool in event.tools}) for event in heard] == [("testsrv", True)]


async def test_an_attached_console_has_the_upstreams_tools_as_operations_and_runs_them(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", mcp_servers=stdio()) as linked, attached_to(linked) as remote:
        operations = operations_of_testsrv(remote)
        outcome = await remote.run("testsrv", "add", {"a": 2, "b": 3})
    add = operations["add"]
    assert isinstance(add, UpstreamTool) and add.risk == "read"
    assert add.input_schema["required"] == ["a", "b"] and add.positional_fields == ["a", "b"]
    assert set(operations) == set(linked.gateway.services["testsrv"].operations)
    assert outcome.result is not None and outcome.result.data["structuredContent"] == {"result": 5}
    assert (outcome.record.agent_id, outcome.record.via) == ("operator:alice", "console")
