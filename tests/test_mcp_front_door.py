"""The MCP front door (`POST /mcp`, mcp.md §1) from the outside: the SDK's own client, in both its "legacy"
(initialize handshake) and "auto" (2026-07-28, stateless) modes, over real sockets against the real gateway and
our orchestrator on 127.0.0.1; raw HTTP where the point is what the wire says (401, 413, 405, Host)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT

from gateway_core import http_edge
from gateway_core import server as server_module
from gateway_core.catalog import ServiceSpec
from gateway_core.clock import Clock
from gateway_core.config import Settings
from gateway_core.errors import ValidationFailed
from gateway_core.handlers import ServiceHandler
from gateway_core.health import HealthReport
from gateway_core.mcp_front_door import CALL_META_KEY, inline_local_refs
from gateway_core.operations import Operation, OperationArgs, OperationTable
from gateway_core.ratelimit import RateLimit
from gateway_core.store import CallRecord
from gateway_core.tool_names import MAX_TOOL_NAME, ToolNames, hashed_tool_name, plain_tool_name
from gateway_core.upstream_tool import UpstreamTool
from tests.cli import COMMAND, mcp_console
from tests.echo_service import ECHO_SPEC
from tests.ports import free_port
from tests.servers import LinkedGateway, RunningGateway, run_gateway, run_linked
from tests.test_mcp_upstreams import STARTS, TESTSRV, stdio
from tests.test_permission_loop import until
from tests.test_permissions import feed, respond
from tests.test_wire_contract import execute

MODES = pytest.mark.parametrize("mode", ["legacy", "auto"])
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
FAST_PROGRESS = {"progress_interval_seconds": 0.1}


@contextlib.asynccontextmanager
async def mcp_client(url: str, token: str, mode: str = "legacy", **headers: str) -> AsyncIterator[Client]:
    """The SDK's client on the gateway's front door, as the agent of `token`."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", **headers},
                              timeout=httpx2.Timeout(30, read=60))
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client:
        yield client


async def post_mcp(url: str, body: Any, token: str | None = None, **headers: str) -> httpx.Response:
    """One raw POST to /mcp."""
    sent = {**MCP_HEADERS, **({"Authorization": f"Bearer {token}"} if token else {}), **headers}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{url}/mcp", content=body if isinstance(body, bytes) else json.dumps(body),
                                 headers=sent)


def tools_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def ledger(gateway: RunningGateway | LinkedGateway) -> list[CallRecord]:
    """Every ledger row, oldest first."""
    await gateway.gateway.recorder.flush()
    return list(reversed(await gateway.gateway.store.recent_calls(1000)))


def the_same_call(record: CallRecord) -> tuple[Any, ...]:
    """What a call's row says beyond how it came in (its id, time, method, JSON-RPC id and way in)."""
    return (record.agent_id, record.service, record.operation, record.status, record.error_code, record.tokens,
            record.cost_usd)


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None
    return result.structured_content


def refusal_in(raised: BaseException) -> MCPError:
    """The MCPError a client raised on connecting: the SDK's task groups wrap it in exception groups."""
    if isinstance(raised, BaseExceptionGroup):
        _, rest = raised.split(MCPError)
        assert rest is None, rest
        return refusal_in(raised.exceptions[0])
    assert isinstance(raised, MCPError), raised
    return raised


def first_progress() -> tuple[asyncio.Event, ProgressFnT]:
    """A progress callback, and an event set by the first notification it hears (the call is under way)."""
    heard_once = asyncio.Event()

    async def heard(progress: float, total: float | None, message: str | None) -> None:
        heard_once.set()

    return heard_once, heard


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


# -- tools ---------------------------------------------------------------------------------------------------


@MODES
async def test_every_operation_of_every_configured_service_is_a_tool_with_its_schema_and_risk(
        tmp_path: Path, mode: str) -> None:
    # GitHub configured against nothing: down, and listed all the same; Coolify not configured: not listed.
    async with run_gateway(tmp_path / "gw.db", github_pat="ghp_test", github_api_url="http://127.0.0.1:9") as gw:
        _, token = await gw.add_agent()
        await until(lambda: gw.gateway.service_status("github") == "down")
        async with mcp_client(gw.url, token, mode) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            capabilities, instructions = client.server_capabilities, client.instructions
    github_operations = gw.gateway.services["github"].operations
    assert set(tools) == ({f"echo_{name}" for name in ("echo", "wipe", "nap", "free")}
                          | {f"github_{name}" for name in github_operations})
    assert capabilities.tools is not None and capabilities.tools.list_changed is False
    assert instructions is not None and "<service>_<operation>" in instructions and "pending" in instructions
    echo, wipe = tools["echo_echo"], tools["echo_wipe"]
    assert (echo.title, echo.description, echo.output_schema) == ("echo · echo", "Echo a message back", None)
    assert echo.input_schema["properties"]["times"] == {"default": 1, "maximum": 10, "minimum": 1,
                                                        "title": "Times", "type": "integer"}
    assert echo.input_schema["required"] == ["message"] and echo.input_schema["additionalProperties"] is False
    assert echo.annotations is not None and wipe.annotations is not None
    assert (echo.annotations.read_only_hint, echo.annotations.destructive_hint, echo.annotations.idempotent_hint,
            echo.annotations.open_world_hint) == (True, False, True, True)
    assert (wipe.annotations.read_only_hint, wipe.annotations.destructive_hint) == (False, True)
    # A model inside the arguments is inlined, not a $ref a client would have to resolve.
    create_pr = tools["github_create-pr"].input_schema
    assert "$ref" not in json.dumps(create_pr) and "$defs" not in create_pr
    pull_request = next(value for value in create_pr["properties"].values() if "properties" in value)
    assert "head" in pull_request["properties"]


def test_tool_names_are_plain_where_they_can_be_and_reversible_where_they_are_not() -> None:
    long_operation = "x" * 80
    keys = [("svc", "a-b"), ("svc", "a.b"), ("svc", "a:b"), ("svc", long_operation), ("other", "list-things")]
    names = ToolNames(keys)
    assert names.name_of("other", "list-things") == "other_list-things"
    assert names.name_of("svc", "a-b") == "svc_a-b"  # the one the clash did not change keeps the plain name
    changed = [names.name_of("svc", "a.b"), names.name_of("svc", "a:b"), names.name_of("svc", long_operation)]
    assert changed == [hashed_tool_name("svc", "a.b"), hashed_tool_name("svc", "a:b"),
                       hashed_tool_name("svc", long_operation)]
    assert len(set(changed)) == 3 and all(name is not None and len(name) <= MAX_TOOL_NAME for name in changed)
    assert plain_tool_name("svc", "a.b") == "svc_a-b"
    for service, operation in keys:  # every name maps back, and the table does not depend on the order
        name = names.name_of(service, operation)
        assert name is not None and names.resolve(name) == (service, operation)
        assert ToolNames(reversed(keys)).name_of(service, operation) == name
    assert names.resolve("svc_unknown") is None


def test_a_definition_that_refers_to_itself_stays_a_reference() -> None:
    schema = {"type": "object", "properties": {"tree": {"$ref": "#/$defs/Node"}, "leaf": {"$ref": "#/$defs/Leaf"}},
              "$defs": {"Leaf": {"type": "string"},
                        "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}}}
    inlined = inline_local_refs(schema)
    assert inlined["properties"]["leaf"] == {"type": "string"}
    assert inlined["properties"]["tree"]["properties"]["child"] == {"$ref": "#/$defs/Node"}
    assert set(inlined["$defs"]) == {"Node"}


# -- calls ---------------------------------------------------------------------------------------------------


@MODES
async def test_a_tool_call_answers_and_records_what_mcp_execute_does(tmp_path: Path, mode: str) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as http:
            legacy = (await http.post("/mcp/rpc", json=execute("echo", "echo", {"message": "hi", "times": 2})))
        async with mcp_client(gw.url, token, mode) as client:
            result = await client.call_tool("echo_echo", {"message": "hi", "times": 2})
        rows = await ledger(gw)
    legacy_result = legacy.json()["result"]
    answer = structured(result)
    assert result.is_error is False
    assert {key: answer[key] for key in ("status", "data")} == {"status": "success", "data": {"echo": "hihi"}}
    assert {key: value for key, value in answer["metadata"].items() if key not in ("callId", "timestamp",
                                                                                  "executionTime")} == {
        key: value for key, value in legacy_result["metadata"].items() if key not in ("callId", "timestamp",
                                                                                     "executionTime")}
    assert json.loads(text_of(result)) == answer and len(result.content) == 1
    assert result.meta is not None and result.meta[CALL_META_KEY] == answer["metadata"]
    by_rpc, by_mcp = rows
    assert the_same_call(by_mcp) == the_same_call(by_rpc)
    assert (by_rpc.method, by_rpc.via) == ("mcp.execute", "rpc")
    assert (by_mcp.method, by_mcp.via, by_mcp.id) == ("tools/call", "mcp", answer["metadata"]["callId"])


@MODES
async def test_bad_arguments_are_a_tool_error_naming_the_field_and_nothing_is_filed(tmp_path: Path,
                                                                                   mode: str) -> None:
    async with run_linked(tmp_path / "p.db") as linked:
        _, token = await linked.add_agent()
        async with mcp_client(linked.url, token, mode) as client:
            result = await client.call_tool("echo_echo", {"message": "", "colour": "red"})
        rows = await ledger(linked)
        filed = await linked.gateway.store.list_permission_requests(status="pending")
    error = structured(result)["error"]
    assert result.is_error is True and structured(result)["status"] == "error"
    assert (error["code"], error["name"]) == (-32602, "INVALID_PARAMS")
    assert {item["field"] for item in error["data"]["errors"]} == {"message", "colour"}
    assert "Fix the arguments" in text_of(result) and "colour" in text_of(result)
    assert filed == []
    assert [(row.status, row.error_code, row.via) for row in rows] == [("error", -32602, "mcp")]


async def test_an_upstream_tools_schema_annotations_and_content_pass_through_unchanged(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", extra_specs=(ECHO_SPEC, PICTURES_SPEC),
                           handlers={"pictures": PicturesHandler()}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "pictures")
        async with mcp_client(gw.url, token) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            shown = await client.call_tool("pictures_show", {"name": "cat"})
            failed = await client.call_tool("pictures_broken", {})
    show = tools["pictures_show"]
    assert show.input_schema == SHOW_SCHEMA and show.output_schema == SHOW_OUTPUT
    assert show.annotations is not None
    # Its own hints kept, the risk hints the enforced risk's (it said read-only; its risk is write).
    assert (show.annotations.title, show.annotations.open_world_hint) == ("Show a picture", False)
    assert (show.annotations.read_only_hint, show.annotations.destructive_hint) == (False, False)
    assert [block.model_dump(by_alias=True, exclude_none=True) for block in shown.content] == SHOW_CONTENT
    assert shown.structured_content == {"name": "cat", "pixels": 4}
    assert shown.meta is not None and shown.meta[CALL_META_KEY]["operation"] == "show"
    assert failed.is_error is True
    assert [block.model_dump(by_alias=True, exclude_none=True) for block in failed.content] == BROKEN_CONTENT
    assert structured(failed)["error"]["code"] == -32009


async def test_a_real_mcp_upstreams_tools_are_listed_and_called_through_the_front_door(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp_servers=stdio()) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "testsrv")
        async with mcp_client(gw.url, token, "auto") as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            added = await client.call_tool("testsrv_add", {"a": 2, "b": 3})
            picture = await client.call_tool("testsrv_picture", {})
            failed = await client.call_tool("testsrv_boom", {})
        rows = await ledger(gw)
    add, note = tools["testsrv_add"], tools["testsrv_note"]
    assert add.input_schema["required"] == ["a", "b"] and add.description == "Adds two integers."
    assert add.annotations is not None and note.annotations is not None
    assert (add.annotations.read_only_hint, note.annotations.read_only_hint, note.annotations.destructive_hint) == (
        True, False, False)  # unannotated: enforced as a write, and said so
    assert added.is_error is False and added.structured_content == {"result": 5}
    assert isinstance(picture.content[0], types.ImageContent)
    assert failed.is_error is True and "boom: the tool failed on purpose" in text_of(failed)
    assert [(row.operation, row.error_code, row.via) for row in rows] == [
        ("add", None, "mcp"), ("picture", None, "mcp"), ("boom", -32009, "mcp")]


# -- permissions: held, approved, timed out, denied ------------------------------------------------------------


@MODES
async def test_a_held_call_reports_progress_and_runs_once_approved(tmp_path: Path, mode: str) -> None:
    async with run_linked(tmp_path / "p.db", mcp=FAST_PROGRESS) as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as operator:
        _, token = await linked.add_agent()
        progress: list[tuple[float, float | None, str | None]] = []

        async def heard(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total, message))

        async with mcp_client(linked.url, token, mode) as client:
            held = asyncio.create_task(client.call_tool("echo_echo", {"message": "hi"}, progress_callback=heard))
            request = await operator.next("mcp_permission_request")
            request_id = request["request_id"]
            await until(lambda: len(progress) >= 2)
            assert not held.done()
            await respond(linked, request_id, True)
            result = await held
        rows = await ledger(linked)
    waiting = f"Waiting for an operator to approve request {request_id} (echo.echo)"
    assert progress[0] == (0.0, 45.0, waiting) and progress[1][1:] == (45.0, waiting)
    assert all(earlier[0] < later[0] for earlier, later in itertools.pairwise(progress))
    assert result.is_error is False and structured(result)["data"] == {"echo": "hi"}
    assert [(row.status, row.permission_request_id, row.via) for row in rows] == [("success", request_id, "mcp")]


@MODES
async def test_a_call_undecided_when_its_hold_ends_is_pending_with_its_request(tmp_path: Path, mode: str) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token):
        _, token = await linked.add_agent()
        async with mcp_client(linked.url, token, mode) as client:
            result = await client.call_tool("echo_echo", {"message": "hi"},
                                            meta={"mcp-console/waitForApproval": 0.2})
        rows = await ledger(linked)
        pending = await linked.gateway.store.list_permission_requests(status="pending")
    answer = structured(result)
    assert result.is_error is True and answer["status"] == "pending"
    assert answer["requestId"] == pending[0].id and answer["error"]["code"] == -32004
    assert "retry this call later, or carry on" in text_of(result)
    assert [(row.status, row.permission_request_id) for row in rows] == [("timed_out", pending[0].id)]


async def test_a_hold_is_capped_by_max_wait(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", permission={"max_wait": 0.3}, mcp=FAST_PROGRESS) as linked, \
            feed(linked.orchestrator_url, linked.operator_token):
        _, token = await linked.add_agent()
        totals: set[float | None] = set()

        async def heard(value: float, total: float | None, message: str | None) -> None:
            totals.add(total)

        async with mcp_client(linked.url, token) as client:
            result = await client.call_tool("echo_echo", {"message": "hi"}, progress_callback=heard,
                                            meta={"mcp-console/waitForApproval": 600})
    assert structured(result)["status"] == "pending" and totals == {0.3}


async def test_without_a_hold_a_call_is_pending_at_once(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", mcp={"approval_wait_seconds": 0}) as linked, \
            feed(linked.orchestrator_url, linked.operator_token):
        _, token = await linked.add_agent()
        async with mcp_client(linked.url, token) as client:
            result = await client.call_tool("echo_echo", {"message": "hi"})
        rows = await ledger(linked)
    assert structured(result)["status"] == "pending"
    assert [row.status for row in rows] == ["pending"]


@MODES
async def test_a_denied_call_says_so_and_not_to_retry(tmp_path: Path, mode: str) -> None:
    async with run_linked(tmp_path / "p.db") as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as operator:
        _, token = await linked.add_agent()
        async with mcp_client(linked.url, token, mode) as client:
            held = asyncio.create_task(client.call_tool("echo_wipe", {"target": "prod"}))
            request = await operator.next("mcp_permission_request")
            await respond(linked, request["request_id"], False, reason="not during the freeze")
            result = await held
    answer = structured(result)
    assert result.is_error is True and (answer["status"], answer["requestId"]) == ("denied", request["request_id"])
    assert "not during the freeze" in text_of(result) and "Do not retry" in text_of(result)


async def test_a_call_whose_client_goes_away_is_recorded_as_cancelled(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp=FAST_PROGRESS) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        running, heard = first_progress()
        async with mcp_client(gw.url, token) as client:
            call = asyncio.create_task(client.call_tool("echo_nap", {"seconds": 30}, progress_callback=heard))
            await running.wait()  # the upstream call is under way
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        rows: list[CallRecord] = []

        async def recorded() -> None:
            rows[:] = await ledger(gw)

        async with asyncio.timeout(10):
            while not rows:
                await recorded()
    assert [(row.operation, row.status, row.error_code, row.via) for row in rows] == [("nap", "error", -32800, "mcp")]


@MODES
async def test_a_call_the_client_cancels_while_it_waits_never_runs_when_approved(tmp_path: Path, mode: str) -> None:
    """On the 2025 wire notifications/cancelled is a POST of its own, and the stream of the call stays open: the
    call waited on, and the operator's approval ran a destructive call for a client that had given up."""
    async with run_linked(tmp_path / "p.db") as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as operator:
        _, token = await linked.add_agent()
        async with mcp_client(linked.url, token, mode) as client:
            held = asyncio.create_task(client.call_tool("echo_wipe", {"target": "prod"}))
            request = await operator.next("mcp_permission_request")
            held.cancel()  # the client gives up, and stays connected
            with contextlib.suppress(asyncio.CancelledError):
                await held
            async with asyncio.timeout(10):
                while not [row for row in await ledger(linked) if row.error_code == -32800]:
                    await asyncio.sleep(0.05)
            approved = await respond(linked, request["request_id"], True, scope="once")
            after = await client.call_tool("echo_echo", {"message": "still here"},  # the client goes on
                                           meta={"mcp-console/waitForApproval": 0})
            await asyncio.sleep(0.5)
        rows = await ledger(linked)
    assert approved.status_code == 200 and structured(after)["status"] == "pending"
    assert [(row.operation, row.status, row.error_code) for row in rows if row.operation == "wipe"] == [
        ("wipe", "error", -32800)]


# -- the plain path: 2025-era calls the door answers without the SDK's per-request machinery ------------------


PER_CALL = re.compile(r'(\\?"(?:callId|timestamp)\\?":\\?")[^"\\]*|(\\?"executionTime\\?":)\d+')


def without_per_call_values(answer: httpx.Response) -> str:
    """The response text with what differs from call to call (its id, time and duration) blanked."""
    return PER_CALL.sub(lambda found: (found[1] or found[2]) + "0", answer.text)


@pytest.mark.parametrize(("tool", "arguments"), [("echo_echo", {"message": "hi", "times": 2}),
                                                ("echo_echo", {"message": "", "colour": "red"}),
                                                ("echo_shout", {"message": "hi"})])
async def test_a_plain_call_is_answered_as_the_sdk_answers_it(tmp_path: Path, tool: str,
                                                             arguments: dict[str, Any]) -> None:
    """The same call on the door's plain path (no `_meta`) and through the SDK (an empty `_meta` sends it there):
    the same headers and, but for the call's own id, time and duration, the same bytes, a tool error and an
    unknown tool's protocol error included."""
    async with run_gateway(tmp_path / "gw.db") as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        version = {"MCP-Protocol-Version": "2025-11-25"}
        plain = await post_mcp(gw.url, tools_call(tool, arguments), token, **version)
        through_sdk_body = tools_call(tool, arguments)
        through_sdk_body["params"]["_meta"] = {}
        through_sdk = await post_mcp(gw.url, through_sdk_body, token, **version)
        rows = await ledger(gw)
    sse_headers = ("content-type", "cache-control", "x-accel-buffering", "transfer-encoding")
    assert plain.status_code == through_sdk.status_code == 200
    assert [plain.headers.get(name) for name in sse_headers] == [through_sdk.headers.get(name) for name in sse_headers]
    assert without_per_call_values(plain) == without_per_call_values(through_sdk)
    assert plain.text.startswith("event: message\r\ndata: {")
    assert len({the_same_call(row) for row in rows}) == 1 and len(rows) == 2


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=6)


def answers_alike(url: str, token: str) -> None:
    """Hypothesis, on a worker thread with a blocking client: any arguments and id, the plain path's answer is
    the SDK's (a success, a validation error, whatever the pipeline says)."""
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}", "MCP-Protocol-Version": "2025-11-25"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        @settings(max_examples=40, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(arguments=st.dictionaries(st.sampled_from(["message", "times", "colour"]), JSON_VALUES, max_size=3),
               rpc_id=st.integers() | st.text(max_size=6))
        def alike(arguments: dict[str, Any], rpc_id: int | str) -> None:
            message = {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call",
                       "params": {"name": "echo_echo", "arguments": arguments}}
            plain = client.post("/mcp", content=json.dumps(message))
            message["params"]["_meta"] = {}  # type: ignore[index]
            through_sdk = client.post("/mcp", content=json.dumps(message))
            assert plain.status_code == through_sdk.status_code == 200
            assert without_per_call_values(plain) == without_per_call_values(through_sdk)

        alike()


@pytest.mark.filterwarnings(  # the server's own use of `random` lands between draws (see test_hostile_input)
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning")
async def test_for_any_arguments_the_plain_path_answers_as_the_sdk(tmp_path: Path) -> None:
    unlimited = {"max_requests": 1_000_000, "window_ms": 60_000}
    async with run_gateway(tmp_path / "gw.db", rate_limit={"per_agent": unlimited,
                                                           "per_service": {"echo": unlimited}}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        await asyncio.to_thread(answers_alike, gw.url, token)


async def test_a_plain_call_held_for_an_operator_keeps_its_stream_alive_and_runs_once_approved(
        tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", mcp=FAST_PROGRESS) as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as operator:
        _, token = await linked.add_agent()
        lines: list[str] = []
        async with httpx.AsyncClient(timeout=30) as http, http.stream(
                "POST", f"{linked.url}/mcp", json=tools_call("echo_echo", {"message": "hi"}),
                headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}) as response:
            request = await operator.next("mcp_permission_request")
            stream = response.aiter_lines()
            async for line in stream:  # the headers came while the call waits, then keep-alives come
                lines.append(line)
                if line.startswith(":") and len([kept for kept in lines if kept.startswith(":")]) == 2:
                    break
            await respond(linked, request["request_id"], True)
            async for line in stream:
                lines.append(line)
        rows = await ledger(linked)
    answer = json.loads(next(line for line in lines if line.startswith("data: "))[len("data: "):])
    assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
    assert lines[:2] == [": keep-alive", ""] and "event: message" in lines
    assert answer["id"] == 7 and answer["result"]["isError"] is False
    assert answer["result"]["structuredContent"]["data"] == {"echo": "hi"}
    assert [(row.status, row.permission_request_id, row.via) for row in rows] == [
        ("success", request["request_id"], "mcp")]


async def test_a_plain_call_whose_client_goes_away_is_cancelled_and_its_request_stays_filed(
        tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as operator:
        _, token = await linked.add_agent()
        async with httpx.AsyncClient(timeout=30) as http, http.stream(
                "POST", f"{linked.url}/mcp", json=tools_call("echo_wipe", {"target": "prod"}),
                headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"}) as response:
            request = await operator.next("mcp_permission_request")
            assert response.status_code == 200
        rows: list[CallRecord] = []
        async with asyncio.timeout(10):
            while not rows:
                rows[:] = await ledger(linked)
        filed = await linked.gateway.store.list_permission_requests(status="pending")
    assert [(row.operation, row.status, row.error_code, row.permission_request_id) for row in rows] == [
        ("wipe", "error", -32800, request["request_id"])]
    assert [pending.id for pending in filed] == [request["request_id"]]


async def serving(url: str) -> None:
    """Returns once the gateway at `url` answers /health."""
    async with asyncio.timeout(STARTS), httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.05)


async def test_two_gateway_processes_on_one_store_serve_the_front_door_alike(tmp_path: Path) -> None:
    """Stateless, so any process answers any request: two `mcp-console serve` on one store, each running the MCP
    upstream, both called by the SDK's client in both modes; the one ledger holds every call."""
    db, config = tmp_path / "shared.db", tmp_path / "gateway.toml"
    config.write_text(f"[mcp_servers.testsrv]\ncommand = {json.dumps(list(TESTSRV))}\n")
    agent = json.loads((await mcp_console("agents", "add", "shared", "--db", db, "--json")).stdout)
    await mcp_console("grants", "add", agent["id"], "testsrv", "--db", db, "--config", config)
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"gateway-{port}.log" for port in ports]
    gateways = [subprocess.Popen([*COMMAND, "serve", "--db", str(db), "--config", str(config), "--port", str(port),
                                  "--orchestrator-port", "0"], stdout=subprocess.DEVNULL, stderr=log.open("w"))
                for port, log in zip(ports, logs, strict=True)]
    sums: list[Any] = []
    try:
        for port in ports:
            url = f"http://127.0.0.1:{port}"
            await serving(url)
            for mode in ("legacy", "auto"):
                async with mcp_client(url, agent["token"], mode) as client:
                    listed = await client.list_tools()  # waits for the upstream's first listing
                    result = await client.call_tool("testsrv_add", {"a": port, "b": 1})
                    sums.append((any(tool.name == "testsrv_add" for tool in listed.tools), structured(result)))
    finally:
        for gateway in gateways:
            gateway.send_signal(signal.SIGTERM)
        exits = [gateway.wait(30) for gateway in gateways]
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT agent_id, operation, status, via FROM calls WHERE service = 'testsrv'")
        recorded = sorted(rows.fetchall())
    assert exits == [0, 0]
    assert sums == [(True, {"result": port + 1}) for port in ports for _ in range(2)]
    assert recorded == [(agent["id"], "add", "success", "mcp")] * 4


# -- limits ----------------------------------------------------------------------------------------------------


@MODES
async def test_a_rate_limited_call_is_a_tool_error_with_the_wait(tmp_path: Path, mode: str) -> None:
    async with run_gateway(tmp_path / "gw.db",
                           rate_limit={"per_agent": {"max_requests": 1, "window_ms": 60_000}}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with mcp_client(gw.url, token, mode) as client:
            first = await client.call_tool("echo_echo", {"message": "hi"})
            second = await client.call_tool("echo_echo", {"message": "hi"})
    error = structured(second)["error"]
    assert first.is_error is False and second.is_error is True
    assert error["code"] == -32005 and error["data"]["retryAfterMs"] > 0
    assert f"wait {error['data']['retryAfterMs']} ms" in text_of(second)


async def test_an_agent_with_too_many_calls_running_is_told_to_wait_a_second(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp={**FAST_PROGRESS, "max_calls_per_agent": 1}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        running, heard = first_progress()
        async with mcp_client(gw.url, token) as client:
            napping = asyncio.create_task(client.call_tool("echo_nap", {"seconds": 1}, progress_callback=heard))
            await running.wait()
            refused = await client.call_tool("echo_echo", {"message": "hi"})
            assert (await napping).is_error is False
            after = await client.call_tool("echo_echo", {"message": "hi"})
        rows = await ledger(gw)
    error = structured(refused)["error"]
    assert refused.is_error is True and (error["code"], error["data"]["retryAfterMs"]) == (-32005, 1000)
    assert after.is_error is False
    assert [(row.operation, row.error_code) for row in rows] == [("echo", -32005), ("nap", None), ("echo", None)]


async def test_a_spent_budget_is_a_tool_error_that_says_stop(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", budget={"daily_usd_per_agent": 0.0003}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with mcp_client(gw.url, token) as client:
            first = await client.call_tool("echo_echo", {"message": "hi"})
            second = await client.call_tool("echo_echo", {"message": "hi"})
    assert first.is_error is False
    assert structured(second)["error"]["code"] == -32010 and "stop calling tools" in text_of(second)


async def test_beyond_max_inflight_a_request_is_refused_with_retry_after(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp={**FAST_PROGRESS, "max_inflight": 1}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        running, heard = first_progress()
        async with mcp_client(gw.url, token, "auto") as client:  # auto: no initialize round trip to count
            napping = asyncio.create_task(client.call_tool("echo_nap", {"seconds": 1}, progress_callback=heard))
            await running.wait()
            refused = await post_mcp(gw.url, tools_call("echo_echo", {"message": "hi"}), token)
            await napping
        rows = await ledger(gw)
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert refused.json()["error"]["code"] == -32001
    assert [(row.method, row.error_code) for row in rows] == [("tools/call", -32001), ("tools/call", None)]
    assert rows[0].agent_id == agent_id  # refused once the agent was known: the row is its


async def test_bodies_nobody_vouches_for_never_fill_the_door_and_a_slow_one_is_cut_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The count was taken before the caller was known: 512 connections sending a body a byte at a time, with no
    token, shut every agent out for as long as they liked."""
    monkeypatch.setattr(http_edge, "BODY_READ_SECONDS", 1.0)
    async with run_gateway(tmp_path / "gw.db", mcp={"max_inflight": 1}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        host, port = gw.url.removeprefix("http://").split(":")
        status_lines = []
        for path in ("/mcp", "/mcp/rpc"):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         "Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{".encode())
            await writer.drain()
            await asyncio.sleep(0.2)  # its body is being read
            if path == "/mcp":
                answered = await post_mcp(gw.url, tools_call("echo_echo", {"message": "hi"}), token)
            async with asyncio.timeout(10):
                status_lines.append(await reader.readline())
                await reader.read()  # to its end: the gateway closed the connection
            writer.close()
    assert answered.status_code == 200 and '"isError":false' in answered.text, answered.text
    assert [line[:12] for line in status_lines] == [b"HTTP/1.1 408"] * 2, status_lines


# -- refused before MCP: auth, size, method, host ----------------------------------------------------------------


@MODES
async def test_a_client_without_a_valid_token_gets_minus_32003(tmp_path: Path, mode: str) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        with pytest.raises(BaseException) as refused:
            async with mcp_client(gw.url, "mcpa_not-a-token", mode):
                pass
    assert refusal_in(refused.value).code == -32003


async def test_a_refused_token_is_a_401_bearer_challenge_audited_and_recorded(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        without = await post_mcp(gw.url, tools_call("echo_echo", {"message": "hi"}))
        wrong = await post_mcp(gw.url, tools_call("echo_echo", {"message": "hi"}), "mcpa_not-a-token")
        rows = await ledger(gw)
        audit = await gw.gateway.store.list_audit()
    assert (without.status_code, without.headers["www-authenticate"]) == (401, 'Bearer realm="mcp-console"')
    assert wrong.headers["www-authenticate"] == 'Bearer realm="mcp-console", error="invalid_token"'
    assert without.json() == {"jsonrpc": "2.0", "id": None, "error": {
        "code": -32003, "message": "Authentication required: an agent token is required: send 'Authorization: "
                                   "Bearer <agent token>'"}}
    assert [(row.method, row.status, row.error_code, row.rpc_id, row.via) for row in rows] == [
        ("tools/call", "error", -32003, "7", "mcp")] * 2
    assert [event.action for event in audit].count("auth.failed") == 2


async def test_an_agent_id_header_that_does_not_match_the_token_is_refused(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        _, token = await gw.add_agent()
        with pytest.raises(BaseException) as refused:
            async with mcp_client(gw.url, token, **{"X-Agent-Id": "someone-else"}):
                pass
        response = await post_mcp(gw.url, tools_call("echo_echo", {"message": "hi"}), token,
                                  **{"X-Agent-Id": "someone-else"})
    refusal = refusal_in(refused.value)
    assert refusal.code == -32003 and "X-Agent-Id" in refusal.message
    assert response.status_code == 401


async def test_a_body_over_the_limit_is_refused_with_413_and_recorded(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", server={"max_body_bytes": 4096}) as gw:
        _, token = await gw.add_agent()
        response = await post_mcp(gw.url, tools_call("echo_echo", {"message": "x" * 5000}), token)
        rows = await ledger(gw)
    assert response.status_code == 413 and response.json()["error"]["code"] == -32600
    assert [(row.method, row.error_code, row.via) for row in rows] == [("mcp", -32600, "mcp")]


MALFORMED = [({"foo": 1}, -32600), ({"jsonrpc": "1.0", "id": 1, "method": "tools/list"}, -32600),
             ({"jsonrpc": "2.0", "id": None, "method": "tools/list"}, -32600),
             ({"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}, -32600),
             ({"jsonrpc": "2.0", "id": True, "method": "tools/list"}, -32600),
             ({"jsonrpc": "2.0", "id": {}, "method": "tools/list"}, -32600),
             ({"jsonrpc": "2.0", "id": 1, "method": 7}, -32600),
             ({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo_echo", "arguments": []}},
              -32602),
             ({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": 5}}, -32602)]


async def test_a_message_that_is_not_json_rpc_is_refused_with_the_contracts_codes_and_recorded(
        tmp_path: Path) -> None:
    """The SDK answered these with its own codes and a pydantic dump, or with 202 and nothing (the client waited
    for ever), and without a ledger row."""
    async with run_gateway(tmp_path / "gw.db") as gw:
        _, token = await gw.add_agent()
        answers = [await post_mcp(gw.url, message, token) for message, _ in MALFORMED]
        null_arguments = await post_mcp(gw.url, {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                                 "params": {"name": "echo_nosuch", "arguments": None}}, token)
        rows = await ledger(gw)
    for (message, code), answer in zip(MALFORMED, answers, strict=True):
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code, (message, answer.text)
        assert "pydantic" not in answer.text
    assert answers[-1].json()["id"] == 3  # a tools/call's id is known: the answer carries it
    assert [row.error_code for row in rows[:len(MALFORMED)]] == [code for _, code in MALFORMED]
    assert (null_arguments.status_code, rows[-1].service, rows[-1].error_code) == (200, "echo", -32002)  # none


async def test_the_door_answers_at_mcp_with_a_trailing_slash_too(tmp_path: Path) -> None:
    """Clients are configured with either; Starlette's 307 from one to the other is gone (it is a 404 elsewhere)."""
    async with run_gateway(tmp_path / "gw.db") as gw:
        _, token = await gw.add_agent()
        async with mcp_client(gw.url, token, "legacy") as plain, \
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http, \
                Client(streamable_http_client(f"{gw.url}/mcp/", http_client=http), mode="legacy") as slashed:
            assert (await slashed.list_tools()).tools == (await plain.list_tools()).tools


async def test_get_is_not_allowed(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw, httpx.AsyncClient() as client:
        response = await client.get(f"{gw.url}/mcp", headers={"Accept": "text/event-stream"})
    assert (response.status_code, response.headers["allow"]) == (405, "POST")


async def test_a_host_or_origin_not_allowed_is_refused(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp={"allowed_hosts": ["gw.internal"]}) as gw:
        _, token = await gw.add_agent()
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        rebound = await post_mcp(gw.url, listing, token, Host="evil.example")
        foreign = await post_mcp(gw.url, listing, token, Origin="http://evil.example")
        named = await post_mcp(gw.url, listing, token, Host="gw.internal:8100")
        plain_text = await post_mcp(gw.url, listing, token, **{"Content-Type": "text/plain"})
    assert (rebound.status_code, foreign.status_code, named.status_code) == (421, 403, 200)
    # Refused in the JSON-RPC envelope, as every other error (the SDK answers plain text)
    for refused in (rebound, foreign, plain_text):
        assert refused.json()["error"]["code"] == -32600 and refused.headers["content-type"] == "application/json"
    assert plain_text.status_code == 400 and "Content-Type" in plain_text.json()["error"]["message"]


async def test_an_unknown_tool_is_a_protocol_error_recorded_as_the_legacy_path_would(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        _, token = await gw.add_agent()
        async with mcp_client(gw.url, token) as client:
            with pytest.raises(MCPError) as no_service:
                await client.call_tool("nosuch_thing", {})
            with pytest.raises(MCPError) as no_operation:
                await client.call_tool("echo_shout", {})
            with pytest.raises(MCPError) as not_configured:
                await client.call_tool("coolify_list-applications", {})
        rows = await ledger(gw)
    assert (no_service.value.code, no_service.value.message) == (-32602, "Unknown tool: nosuch_thing")
    assert no_operation.value.code == not_configured.value.code == -32602
    assert [(row.service, row.error_code) for row in rows] == [("nosuch", -32000), ("echo", -32002),
                                                               ("coolify", -32001)]


@pytest.mark.filterwarnings("ignore:ping is removed")  # legacy mode still has it: the point here
async def test_housekeeping_is_counted_but_never_recorded(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        _, token = await gw.add_agent()
        async with mcp_client(gw.url, token) as client:
            await client.list_tools()
            await client.send_ping()  # type: ignore[deprecated]
        rows = await ledger(gw)
        metrics = gw.gateway.metrics.render().decode()
    assert rows == []
    for method in ("initialize", "notifications/initialized", "tools/list", "ping"):
        assert f'mcp_frontdoor_requests_total{{method="{method}"}} 1.0' in metrics


def test_the_console_and_the_gateway_start_without_importing_the_mcp_sdk() -> None:
    code = ("import sys, console.cli, gateway_core.cli, gateway_core.runtime, gateway_core.server; "
            "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'mcp_types'))))")
    modules = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert modules.strip() == "[]"


# -- a service standing in for an MCP upstream: its operations are UpstreamTools ----------------------------------


SHOW_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
SHOW_OUTPUT = {"type": "object", "properties": {"name": {"type": "string"}, "pixels": {"type": "integer"}}}
SHOW_CONTENT = [{"type": "text", "text": "a cat"}, {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}]
BROKEN_CONTENT = [{"type": "text", "text": "the frame is broken"}]
PICTURES_SPEC = ServiceSpec("pictures", "local", False, 300, 0.0009, RateLimit(max_requests=1000, window_ms=60_000),
                            "Pictures, as an MCP server would serve them")


class PicturesHandler(ServiceHandler):
    service = "pictures"
    operations = OperationTable([
        UpstreamTool.declare("show", "Show a picture", SHOW_SCHEMA, "write", output_schema=SHOW_OUTPUT,
                             annotations={"title": "Show a picture", "readOnlyHint": True, "openWorldHint": False}),
        UpstreamTool.declare("broken", "Always fails", {"type": "object"}, "read"),
    ])

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> PicturesHandler:
        return cls()

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        if operation.name == "broken":  # an upstream's isError result, as the upstreams hand it on
            raise ValidationFailed("the frame is broken", {"content": BROKEN_CONTENT})
        return {"content": SHOW_CONTENT, "structuredContent": {"name": "cat", "pixels": 4}}

    async def health(self) -> HealthReport:
        return HealthReport("healthy", 0.1)


class SlowToCheckPictures(PicturesHandler):
    """Pictures whose health check takes a moment, and says when it ended."""

    def __init__(self) -> None:
        self.checks_done = 0

    async def health(self) -> HealthReport:
        await asyncio.sleep(0.3)
        self.checks_done += 1
        return await super().health()


async def test_the_front_door_loads_after_the_first_health_checks(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's import is a second of CPU on a worker thread: beside the first health checks it was in their
    latency (the sandbox's stand-ins read 0.8 s instead of a few ms)."""
    pictures = SlowToCheckPictures()
    checks_done_at_import: list[int] = []
    real_import = server_module.import_in_thread

    async def recorded_import(*names: str) -> list[Any]:
        checks_done_at_import.append(pictures.checks_done)
        return await real_import(*names)

    monkeypatch.setattr(server_module, "import_in_thread", recorded_import)
    async with run_gateway(tmp_path / "gw.db", extra_specs=(ECHO_SPEC, PICTURES_SPEC),
                           handlers={"pictures": pictures}) as gw:
        _, token = await gw.add_agent()
        async with mcp_client(gw.url, token) as client:
            await client.list_tools()  # served: the front door loaded
    assert checks_done_at_import == [1]
