"""The MCP front door, `POST /mcp` (mcp.md §1): MCP clients see every configured operation as a tool and call it
through `Gateway.execute`, the same pipeline, permissions, cost and ledger as `mcp.execute`.

Streamable HTTP on the official SDK, stateless, answers as SSE. Every HTTP request is checked here before the SDK
reads it (method, load, headers, Host and Origin, body size, the agent's token), and one refused here is one
ledger row. The commonest request, a 2025-era `tools/call` with no `_meta`, the door answers itself, as the SDK
would, byte for byte (its "plain path"): the SDK's per-request machinery cost more than the call. This module
imports the SDK (~1 s): the server loads it off the event loop (`server.McpRoute`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.methods import serialize_server_result
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway_core import __version__
from gateway_core.auth import CredentialRefused
from gateway_core.clock import iso_utc
from gateway_core.errors import (
    GatewayError,
    InvalidParams,
    InvalidRequest,
    OperationNotSupported,
    PermissionDenied,
    RateLimitExceeded,
    RequestCancelled,
    ServiceNotFound,
    ServiceUnavailable,
)
from gateway_core.gateway import ExecuteOutcome, Gateway
from gateway_core.http_edge import (
    BODY_READ_SECONDS,
    MAX_HEADER_BYTES,
    BodyTooLarge,
    BodyTooSlow,
    HeadersTooLarge,
    caller_of,
    check_header_size,
    read_body,
)
from gateway_core.json_bytes import json_bytes
from gateway_core.models import CallMetadata, ExecuteOptions, ExecuteParams, error_envelope, parse_json
from gateway_core.operations import Operation, Risk
from gateway_core.rpc import RequestAuthentication
from gateway_core.store import CallRecord
from gateway_core.tool_names import ToolNames
from gateway_core.upstream_tool import UpstreamTool

log = logging.getLogger(__name__)

AGENT_ID_SCOPE_KEY: Final = "mcp_console.agent_id"  # the authenticated agent, in the ASGI scope the SDK hands on
WAIT_META_KEY: Final = "mcp-console/waitForApproval"  # a call's own hold, in seconds, in its `_meta`
CALL_META_KEY: Final = "mcp-console/call"  # the call's metadata, in every result's `_meta`
TOOLS_CALL: Final = "tools/call"
CANCELLED_NOTIFICATION: Final = "notifications/cancelled"
# The ledger's method for a request refused before its JSON-RPC method could be read (too big, unreadable).
UNREAD_METHOD: Final = "mcp"
# Methods the SDK answers without the pipeline: counted by name in mcp_frontdoor_requests_total, no ledger row.
HOUSEKEEPING_METHODS: Final = frozenset({
    "initialize", "ping", "tools/list", "server/discover", "notifications/initialized", CANCELLED_NOTIFICATION,
    "notifications/progress", "notifications/roots/list_changed"})
UNKNOWN_METHOD: Final = "unknown"
# The plain path (McpFrontDoor._plain_call): the message and params it takes, and the SDK's SSE headers.
_PLAIN_MESSAGE_KEYS: Final = frozenset({"jsonrpc", "id", "method", "params"})
_PLAIN_PARAMS_KEYS: Final = frozenset({"name", "arguments"})
PLAIN_HEADERS_AFTER_SECONDS: Final = 0.5  # a call not answered by then gets its headers, then keep-alives
_SSE_START: Final[Message] = {"type": "http.response.start", "status": 200, "headers": [
    (b"cache-control", b"no-cache, no-transform"), (b"connection", b"keep-alive"),
    (b"content-type", b"text/event-stream"), (b"x-accel-buffering", b"no")]}
RETRY_AFTER_MS: Final = 1000  # what a refused call is told to wait when too many of its agent's run at once

INSTRUCTIONS = (
    "mcp-console gateway: each tool is one operation of one service, named <service>_<operation>. "
    "Every call is checked, rate-limited, costed and recorded. A call the agent may not make yet waits for a "
    "human operator to approve it (progress notifications say so); a result with status \"pending\" means the "
    "request was filed: retry later or carry on with other work. Never work around a denial."
)

# What a risk tells a client (mcp.md §1 "Schema and annotations"); the two risk hints are what the gateway
# enforces, so an upstream tool's own are overwritten with them.
RISK_HINTS: Final[Mapping[Risk, Mapping[str, bool]]] = {
    "read": {"readOnlyHint": True, "destructiveHint": False},
    "write": {"readOnlyHint": False, "destructiveHint": False},
    "destructive": {"readOnlyHint": False, "destructiveHint": True},
}
# Whether the same call twice does nothing more, by risk, for native services (upstream tools keep their own).
NATIVE_IDEMPOTENT: Final[Mapping[Risk, bool]] = {"read": True, "write": False, "destructive": False}

# Permission refusals (-32004 data.status) as MCP clients are told them: still waiting, or final.
PENDING_STATUSES: Final = frozenset({"pending", "timed_out", "gateway_stopping"})
FINAL_REFUSALS: Final = frozenset({"denied", "expired", "cancelled"})


# -- tools: what the listing says ---------------------------------------------------------------------------


def inline_local_refs(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with each `{"$ref": "#/$defs/X"}` replaced by X itself, so clients that do not resolve references
    read every property. A definition that refers to itself stays a reference (with its `$defs` kept)."""
    definitions: Mapping[str, Any] = schema.get("$defs", {})
    recursive: set[str] = set()

    def expand(node: Any, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [expand(item, expanding) for item in node]
        if not isinstance(node, dict):
            return node
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            name = reference.removeprefix("#/$defs/")
            if name in definitions and name not in expanding:
                siblings = {key: expand(value, expanding) for key, value in node.items() if key != "$ref"}
                return {**expand(definitions[name], (*expanding, name)), **siblings}
            recursive.add(name)
        return {key: expand(value, expanding) for key, value in node.items() if key != "$defs"}

    inlined: dict[str, Any] = expand(schema, ())
    if recursive:
        inlined["$defs"] = {name: expand(definitions[name], (name,)) for name in sorted(recursive)
                            if name in definitions}
    return inlined


def input_schema_of(operation: Operation) -> dict[str, Any]:
    """The tool's inputSchema: an upstream tool's own, else the argument model's, references inlined."""
    if isinstance(operation, UpstreamTool):
        return dict(operation.input_schema)
    return inline_local_refs(operation.args_model.model_json_schema())


def annotations_of(operation: Operation) -> dict[str, Any]:
    if isinstance(operation, UpstreamTool):
        return {**operation.annotations, **RISK_HINTS[operation.risk]}
    return {**RISK_HINTS[operation.risk], "idempotentHint": NATIVE_IDEMPOTENT[operation.risk], "openWorldHint": True}


def tool_of(name: str, service: str, operation: Operation) -> types.Tool:
    """The tool an operation is listed as. Native tools have no outputSchema: SDK clients would check every
    result's structuredContent against it."""
    return types.Tool.model_validate({
        "name": name,
        "title": f"{service} · {operation.name}",
        "description": operation.description,
        "inputSchema": input_schema_of(operation),
        "annotations": annotations_of(operation),
        **({"outputSchema": dict(operation.output_schema)}
           if isinstance(operation, UpstreamTool) and operation.output_schema is not None else {}),
    })


@dataclass(frozen=True, slots=True)
class ToolListing:
    """The tools of one set of operations: names both ways, and the listing as sent."""

    names: ToolNames
    operations: Mapping[str, tuple[str, Operation]]  # tool name → (service, operation)
    result: types.ListToolsResult
    # tool name → its inputSchema, made once: the SDK asks for it on every tools/call, and pydantic building a
    # model's JSON Schema was about 40% of a call's time at /mcp.
    input_schemas: Mapping[str, Mapping[str, Any]]


def list_tools(services: Mapping[str, tuple[Operation, ...]]) -> ToolListing:
    """Every operation of the given services (service → its operations) as a tool."""
    names = ToolNames((service, operation.name) for service, operations in services.items()
                      for operation in operations)
    by_key = {(service, operation.name): operation for service, operations in services.items()
              for operation in operations}
    operations = {name: (service, by_key[service, operation]) for name, (service, operation) in names.items()}
    tools = [tool_of(name, service, operation) for name, (service, operation) in operations.items()]
    return ToolListing(names, operations, types.ListToolsResult(tools=tools),
                       {tool.name: tool.input_schema for tool in tools})


# -- results: what a call answers ---------------------------------------------------------------------------


def _text(value: Any) -> types.TextContent:
    return types.TextContent(type="text", text=value if isinstance(value, str) else json_bytes(value).decode())


def success_result(operation: Operation, outcome: ExecuteOutcome) -> types.CallToolResult:
    """A native operation's result is the legacy `result` as structured content and as one text block; an upstream
    tool's content blocks and structured content pass on as they came."""
    assert outcome.result is not None
    legacy = outcome.result.wire()
    meta = {CALL_META_KEY: legacy["metadata"]}
    if isinstance(operation, UpstreamTool):
        data = outcome.result.data
        return types.CallToolResult.model_validate({"content": data.get("content") or [],
                                                    "structuredContent": data.get("structuredContent"),
                                                    "isError": False, "_meta": meta})
    return types.CallToolResult(content=[_text(legacy)], structured_content=legacy, is_error=False, meta=meta)


def _field_errors(error: GatewayError) -> str:
    errors = (error.data or {}).get("errors") or []
    return "; ".join(f"{item.get('field')}: {item.get('message')}" for item in errors if isinstance(item, dict))


def hint_for(error: GatewayError) -> str:
    """What an agent should do next, by code."""
    data = error.data or {}
    if isinstance(error, InvalidParams):
        return f"Fix the arguments and call again ({_field_errors(error) or 'see the tool inputSchema'})."
    if isinstance(error, RateLimitExceeded):
        return f"Too many calls: wait {data.get('retryAfterMs', RETRY_AFTER_MS)} ms, then call again."
    if error.code == -32010:
        return "This agent's daily budget is spent: stop calling tools through this gateway for today."
    if error.code == -32006:
        return "The call may have happened anyway: check its effect before repeating a write."
    if isinstance(error, ServiceUnavailable):
        return "The service cannot be used right now: try again later or do without it."
    return ""


def _call_metadata(record: CallRecord, service: str, operation: str) -> dict[str, Any]:
    """A refused call's `_meta` metadata: the same fields as a success's, from its ledger row."""
    return CallMetadata(executionTime=round(record.duration_ms), tokensUsed=record.tokens, cost=record.cost_usd,
                        service=service, operation=operation, timestamp=iso_utc(record.ts),
                        callId=record.id).model_dump(exclude_none=True)


def error_result(operation: Operation, service: str, error: GatewayError, record: CallRecord) -> types.CallToolResult:
    """A pipeline error as a tool result: `isError`, the gateway's error in structured content, a hint in the text.
    A permission refusal says whether the request is still waiting (`pending`) or decided (do not retry)."""
    data = error.data or {}
    structured: dict[str, Any] = {"status": "error", "error": {"code": error.code, "name": error.name,
                                                               "message": error.message, "data": error.data}}
    text = f"Error {error.code} {error.name}: {error.message}"
    if isinstance(error, PermissionDenied):
        refusal, request_id = data.get("status"), data.get("requestId")
        if request_id is not None:
            structured["requestId"] = request_id
        if refusal in PENDING_STATUSES:
            structured["status"] = "pending"
            text = (f"Permission for {service}.{operation.name} is waiting for an operator's decision (request "
                    f"{request_id}). The request is filed: retry this call later, or carry on with other work. "
                    f"({error.message})")
        elif refusal in FINAL_REFUSALS:
            structured["status"] = "expired" if refusal == "expired" else "denied"
            text = f"{error.message}. Do not retry this call, and do not work around the decision."
    elif hint := hint_for(error):
        text = f"{text}\n{hint}"
    content: list[Any] = [_text(text)]
    if isinstance(operation, UpstreamTool) and isinstance(data.get("content"), list):
        content = data["content"]  # the upstream's own isError blocks, as they came (mcp.md §3)
    return types.CallToolResult.model_validate({"content": content, "structuredContent": structured,
                                                "isError": True,
                                                "_meta": {CALL_META_KEY: _call_metadata(record, service,
                                                                                        operation.name)}})


# -- progress while a call waits ------------------------------------------------------------------------------


class Heartbeat:
    """Progress notifications for one call whose client gave a progress token: at once and every `interval`
    while it waits for an operator (progress: seconds waited, total: the hold), and every `interval` while it
    runs (`Running <service>.<operation>`). Progress only ever grows, as MCP requires."""

    def __init__(self, ctx: ServerRequestContext[Any], interval: float, hold: float, subject: str) -> None:
        self._ctx = ctx
        self._interval = interval
        self._hold = hold
        self._subject = subject
        self._started = time.monotonic()
        self._phase_started = self._started
        self._request_id: str | None = None
        self._running = False
        self._changed = asyncio.Event()
        self._last = -1.0

    def on_wait(self, request_id: str | None) -> None:
        """`Gateway.execute`'s `on_wait`: a permission request's id while the call waits, None once it runs."""
        self._request_id, self._running = request_id, request_id is None
        self._phase_started = time.monotonic()
        self._changed.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._changed.wait()
            changed, self._changed = self._changed.is_set(), asyncio.Event()
            if self._running and changed:
                continue  # the upstream call starts now: a heartbeat only if it lasts
            if self._request_id is None and not self._running:
                continue  # still before the permission step (validation, limits)
            await self._report()

    async def _report(self) -> None:
        now = time.monotonic()
        if self._running:
            progress, total = now - self._started, None
            message = f"Running {self._subject}"
        else:
            progress, total = min(now - self._phase_started, self._hold), self._hold
            message = f"Waiting for an operator to approve request {self._request_id} ({self._subject})"
        progress = max(round(progress, 1), self._last + 0.1)
        self._last = progress
        try:
            await self._ctx.session.report_progress(progress, total, message)
        except Exception:  # the stream is gone: the call's own answer will find out
            log.debug("progress for %s not sent", self._subject, exc_info=True)


HeartbeatFactory = Callable[[float, str], Heartbeat]  # (the hold, "<service>.<operation>") → the call's heartbeat


# -- the front door ---------------------------------------------------------------------------------------------


@runtime_checkable
class FirstListing(Protocol):
    """A handler whose operations come from a listing (an MCP upstream): `first_listing()` returns once its tools
    were listed at least once (live, or from the store's cache)."""

    async def first_listing(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Envelope:
    """What the door reads of a request body: its JSON-RPC method and id, for the ledger and the metric."""

    method: str | None
    rpc_id: str | None  # as text, as the legacy path records it
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _PlainCall:
    """A tools/call the door answers without the SDK (see McpFrontDoor._plain_call)."""

    rpc_id: int | str
    name: str
    arguments: dict[str, Any] | None
    version: str  # the protocol version the result is shaped for


class McpFrontDoor:
    """The ASGI object at `/mcp`. `run()` must be entered (once) while it serves."""

    def __init__(self, gateway: Gateway, bound_host: str) -> None:
        self._gateway = gateway
        settings = gateway.settings
        self._settings = settings.mcp
        self._body_limit = settings.server.max_body_bytes
        self._security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=_allowed_hosts(bound_host, settings.mcp.allowed_hosts),
            allowed_origins=list(settings.mcp.allowed_origins))
        self._security_check = TransportSecurityMiddleware(self._security)
        self.server: Server[Any] = Server(
            "mcp-console", version=__version__, instructions=INSTRUCTIONS, on_list_tools=self._list_tools,
            on_call_tool=self._call_tool, get_tool_input_schema=self._input_schema)
        self._manager = StreamableHTTPSessionManager(
            app=self.server, stateless=True, json_response=False, security_settings=self._security,
            max_request_body_size=self._body_limit)
        self._inflight = 0
        self._calls_by_agent: dict[str, int] = {}
        self._listing: ToolListing | None = None
        self._listing_key: tuple[tuple[str, tuple[int, ...]], ...] = ()
        self._method_counters: dict[str, Any] = {}
        # tools/calls in flight by (agent, JSON-RPC id): what a notifications/cancelled names. Ids are the
        # client's, unique among its calls in flight; two clients of one agent could share one (both cancelled).
        self._running: dict[tuple[str, str], set[asyncio.Task[Any]]] = {}
        self._cancelled: set[asyncio.Task[Any]] = set()  # of those, the ones a notifications/cancelled cancelled

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        async with self._manager.run():
            yield

    # -- HTTP: everything checked before the SDK reads the request ------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            # Stateless: a GET would open an SSE stream that never carries anything, and there is no session
            # to DELETE.
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        await self._admit(scope, receive, send, time.perf_counter())

    async def _admit(self, scope: Scope, receive: Receive, send: Send, started: float) -> None:
        request = Request(scope, receive)
        try:
            check_header_size(request)
        except HeadersTooLarge:
            too_large = InvalidRequest(f"Request headers too large: the limit is {MAX_HEADER_BYTES} bytes")
            await self._refuse(scope, receive, send, too_large, started, status=431, close=True)
            return
        refused = await self._security_check.validate_request(request, is_post=True)
        if refused is not None:  # a Host or Origin not allowed (DNS rebinding), or not JSON
            # The SDK's words and status (421, 403, 400), in the JSON-RPC envelope every other error comes in.
            await self._refuse(scope, receive, send, InvalidRequest(bytes(refused.body).decode()), started,
                               status=refused.status_code)
            return
        try:
            body = await read_body(request, self._body_limit)
        except BodyTooLarge:
            too_large = InvalidRequest(f"Request body too large: the limit is {self._body_limit} bytes")
            await self._refuse(scope, receive, send, too_large, started, status=413, close=True)
            return
        except BodyTooSlow:
            too_slow = InvalidRequest(f"Request body not received within {BODY_READ_SECONDS:g} s")
            await self._refuse(scope, receive, send, too_slow, started, status=408, close=True)
            return
        try:
            envelope = _read_envelope(body)
        except GatewayError as error:
            await self._refuse(scope, receive, send, error, started)
            return
        caller = caller_of(request)
        try:
            agent_id = RequestAuthentication(self._gateway, caller).agent_id()
        except CredentialRefused as refusal:
            challenge = 'Bearer realm="mcp-console"' + (', error="invalid_token"' if caller.authorization else "")
            await self._refuse(scope, receive, send, refusal, started, envelope,
                               headers={"WWW-Authenticate": challenge})
            return
        if envelope.method == CANCELLED_NOTIFICATION:  # before the count: a cancel is what frees a busy door
            self._cancel(agent_id, envelope.message.get("params"))
        # Counted once authenticated: requests nobody vouches for (a body sent a byte at a time) filled the
        # count and shut every agent out.
        if self._inflight >= self._settings.max_inflight:
            busy = ServiceUnavailable(f"The MCP front door is busy ({self._settings.max_inflight} requests in "
                                      "flight): retry in a second")
            await self._refuse(scope, receive, send, busy, started, envelope, headers={"Retry-After": "1"},
                               agent_id=agent_id)
            return
        if envelope.method == TOOLS_CALL and (problem := _tools_call_problem(envelope)) is not None:
            await self._refuse(scope, receive, send, problem, started, envelope, rpc_id=envelope.message.get("id"),
                               agent_id=agent_id)
            return
        self._inflight += 1
        try:
            if envelope.method != TOOLS_CALL:
                self._count_housekeeping(envelope.method)
            elif (plain := self._plain_call(request, envelope.message)) is not None:
                await self._answer_plain_call(plain, agent_id, receive, send)
                return
            scope[AGENT_ID_SCOPE_KEY] = agent_id
            await self._manager.handle_request(scope, _replay(body, receive), send)
        finally:
            self._inflight -= 1

    def _cancel(self, agent_id: str, params: Any) -> None:
        """notifications/cancelled: on the 2025 wire it is a POST of its own, which the SDK answers 202 and
        nothing more; the call it names, this agent's, would have run on (an approval given after the client had
        given up ran a destructive call for nobody)."""
        if isinstance(params, dict) and isinstance(request_id := params.get("requestId"), str | int):
            for task in self._running.get((agent_id, str(request_id)), ()):
                if task not in self._cancelled:
                    self._cancelled.add(task)
                    task.cancel()

    # -- the plain path: a 2025-era tools/call without the SDK's per-request machinery -------------------------

    def _plain_call(self, request: Request, message: dict[str, Any]) -> _PlainCall | None:
        """The call, when the door can answer it exactly as the SDK would without it: a 2025-era (handshake)
        request, SSE accepted, a well-formed message whose params are a tool's name and arguments only (an unknown
        name is `_tool_call`'s to answer, as on the SDK's path). Anything else (a `_meta`, so a progress token too;
        the 2026 wire; a header the SDK would refuse) goes to the SDK. A stateless 2025 request costs the SDK a
        transport, a session, a dispatcher and several tasks: about 1.2 ms a call on the development machine, more
        than the rest of the call."""
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER, types.DEFAULT_NEGOTIATED_VERSION)
        if version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return None
        accepts_json, accepts_sse = check_accept_headers(request)
        if not (accepts_json and accepts_sse) or message.keys() != _PLAIN_MESSAGE_KEYS:
            return None
        params = message["params"]  # its id, name and arguments checked at the door (_read_envelope and after)
        if not params.keys() <= _PLAIN_PARAMS_KEYS:
            return None
        return _PlainCall(message["id"], params["name"], params.get("arguments"), version)

    async def _answer_plain_call(self, call: _PlainCall, agent_id: str, receive: Receive, send: Send) -> None:
        """Runs the call and answers it as the SDK does (one SSE `message` event with the JSON-RPC response, on
        the headers it sends). While the call waits (an operator's decision, a slow upstream) the headers go out
        and an SSE comment every `[mcp] progress_interval_seconds` keeps the stream alive; the client closing it
        cancels the call, as on the SDK's path."""
        work = asyncio.create_task(self._tool_call(agent_id, str(call.rpc_id), call.name, call.arguments, {}, None))
        gone = asyncio.create_task(_disconnected(receive))
        streaming = False
        try:
            while True:
                done, _ = await asyncio.wait((work, gone), timeout=self._settings.progress_interval_seconds
                                             if streaming else PLAIN_HEADERS_AFTER_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if work in done:
                    break
                if gone in done:
                    return
                if not streaming:
                    await send(_SSE_START)
                    streaming = True
                await send({"type": "http.response.body", "body": b": keep-alive\r\n\r\n", "more_body": True})
        finally:
            gone.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        event = b"event: message\r\ndata: " + _plain_answer(call, work) + b"\r\n\r\n"
        if not streaming:
            await send(_SSE_START)
        await send({"type": "http.response.body", "body": event, "more_body": False})

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: GatewayError, started: float,
                      envelope: _Envelope | None = None, *, status: int | None = None,
                      headers: dict[str, str] | None = None, close: bool = False,
                      rpc_id: str | int | None = None, agent_id: str | None = None) -> None:
        """Answers a request refused before MCP (JSON-RPC error, `id` null unless given) and writes its one ledger
        row (the agent's, once it is known)."""
        self._record_refusal(error, started, envelope, agent_id)
        headers = dict(headers or {})
        if close:  # a refused body or header block is not read any further: closing the connection stops it
            headers["Connection"] = "close"
        body = json_bytes(error_envelope(rpc_id, error))
        await Response(body, status or error.http_status, headers, media_type="application/json")(
            scope, receive, send)

    def _record_refusal(self, error: GatewayError, started: float, envelope: _Envelope | None = None,
                        agent_id: str | None = None) -> None:
        self._gateway.record(agent_id=agent_id, method=envelope.method if envelope else UNREAD_METHOD, status="error",
                             error_code=error.code, started=started, rpc_id=envelope.rpc_id if envelope else None,
                             via="mcp")

    def _count_housekeeping(self, method: str | None) -> None:
        label = method if method in HOUSEKEEPING_METHODS else UNKNOWN_METHOD
        counter = self._method_counters.get(label)
        if counter is None:
            counter = self._method_counters[label] = self._gateway.metrics.mcp_front_door_requests.labels(label)
        counter.inc()

    # -- MCP: tools ----------------------------------------------------------------------------------------

    def listing(self) -> ToolListing:
        """The tools of every configured service (down ones too), built again only when operations changed."""
        services = {name: tuple(state.operations.values()) for name, state in self._gateway.services.items()
                    if state.handler is not None}
        key = tuple((name, tuple(map(id, operations))) for name, operations in services.items())
        if self._listing is None or key != self._listing_key:
            self._listing, self._listing_key = list_tools(services), key
        return self._listing

    def _input_schema(self, name: str) -> Mapping[str, Any] | None:
        return self.listing().input_schemas.get(name)

    async def _list_tools(self, ctx: ServerRequestContext[Any],
                          params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        await self._wait_for_first_listings()
        return self.listing().result

    async def _wait_for_first_listings(self) -> None:
        """Gives upstreams never listed yet `[mcp] first_list_wait_seconds` to list their tools."""
        waiting = []
        for state in self._gateway.services.values():
            handler: object = state.handler
            if isinstance(handler, FirstListing):
                waiting.append(handler.first_listing())
        if waiting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.first_list_wait_seconds):
                    await asyncio.gather(*waiting)

    async def _call_tool(self, ctx: ServerRequestContext[Any],
                         params: types.CallToolRequestParams) -> types.CallToolResult:
        assert ctx.request is not None  # the HTTP request: both revisions of the wire hand it on
        meta: Mapping[str, Any] = ctx.meta or {}
        heartbeat_for = None
        if meta.get("progress_token") is not None:
            def heartbeat_for(hold: float, subject: str) -> Heartbeat:
                return Heartbeat(ctx, self._settings.progress_interval_seconds, hold, subject)
        return await self._tool_call(ctx.request.scope[AGENT_ID_SCOPE_KEY], str(ctx.request_id), params.name,
                                     params.arguments, meta, heartbeat_for)

    async def _tool_call(self, agent_id: str, rpc_id: str, name: str, arguments: dict[str, Any] | None,
                         meta: Mapping[str, Any], heartbeat_for: HeartbeatFactory | None) -> types.CallToolResult:
        """One tools/call, however it came: the SDK's handler or the door's own plain path."""
        started = time.perf_counter()
        found = self.listing().operations.get(name)
        if found is None:
            self._gateway.record(agent_id=agent_id, method=TOOLS_CALL, service=name.partition("_")[0],
                                 status="error", error_code=self._unknown_tool_code(name), started=started,
                                 rpc_id=rpc_id, via="mcp")
            raise MCPError(InvalidParams.code, f"Unknown tool: {name}")
        service, operation = found
        running = self._calls_by_agent.get(agent_id, 0)
        if running >= self._settings.max_calls_per_agent:
            error = RateLimitExceeded(
                f"Agent {agent_id} has {running} calls running through the MCP front door, the most it may",
                {"limit": self._settings.max_calls_per_agent, "identifier": f"agent:{agent_id}:mcp",
                 "retryAfterMs": RETRY_AFTER_MS})
            record = self._gateway.record(agent_id=agent_id, method=TOOLS_CALL, service=service,
                                          operation=operation.name, status="error", error_code=error.code,
                                          started=started, rpc_id=rpc_id, via="mcp")
            return error_result(operation, service, error, record)
        self._calls_by_agent[agent_id] = running + 1
        try:
            return await self._execute(agent_id, rpc_id, service, operation, arguments, meta, heartbeat_for,
                                       started)
        finally:
            left = self._calls_by_agent[agent_id] - 1
            if left:
                self._calls_by_agent[agent_id] = left
            else:
                del self._calls_by_agent[agent_id]

    async def _execute(self, agent_id: str, rpc_id: str, service: str, operation: Operation,
                       arguments: dict[str, Any] | None, meta: Mapping[str, Any],
                       heartbeat_for: HeartbeatFactory | None, started: float) -> types.CallToolResult:
        hold = min(_hold_of(meta.get(WAIT_META_KEY), self._settings.approval_wait_seconds),
                   self._gateway.settings.permission.max_wait)
        execute_params = ExecuteParams(service=service, operation=operation.name, args=arguments or {},
                                       options=ExecuteOptions(waitForApproval=hold))
        heartbeat = ticking = None
        if heartbeat_for is not None:
            heartbeat = heartbeat_for(hold, f"{service}.{operation.name}")
            ticking = asyncio.create_task(heartbeat.run())
        request_ids: list[str] = []

        def waiting(request_id: str | None) -> None:
            if request_id is not None:
                request_ids.append(request_id)
            if heartbeat is not None:
                heartbeat.on_wait(request_id)

        # This task (the SDK's handler, or the plain path's) is what a notifications/cancelled naming the call
        # cancels: listed only while the pipeline runs, so a cancel never lands after it.
        this = asyncio.current_task()
        assert this is not None
        running = self._running.setdefault((agent_id, rpc_id), set())
        running.add(this)
        try:
            outcome = await self._gateway.execute(agent_id, execute_params, rpc_id, method=TOOLS_CALL, via="mcp",
                                                  on_wait=waiting)
        except asyncio.CancelledError:
            # The client closed the call's stream, or sent notifications/cancelled naming it: its row says so;
            # a filed request stays pending, and an approval of it later runs nothing for this call.
            record = self._gateway.record(
                agent_id=agent_id, method=TOOLS_CALL, service=service, operation=operation.name, status="error",
                error_code=RequestCancelled.code, started=started, rpc_id=rpc_id,
                permission_request_id=request_ids[-1] if request_ids else None, via="mcp")
            if this not in self._cancelled or this.uncancel() > 0:
                raise  # the stream is closed: nobody reads an answer
            return error_result(operation, service, RequestCancelled("Cancelled by the client"), record)
        finally:
            running.discard(this)
            if not running:
                self._running.pop((agent_id, rpc_id), None)
            self._cancelled.discard(this)
            if ticking is not None:
                ticking.cancel()
        if outcome.error is not None:
            return error_result(operation, service, outcome.error, outcome.record)
        return success_result(operation, outcome)

    def _unknown_tool_code(self, name: str) -> int:
        """The code the legacy path records for the same call: no such service, not configured, or no such
        operation."""
        service, _, operation = name.partition("_")
        spec = self._gateway.catalog.resolve(service)
        if spec is None:
            return ServiceNotFound.code
        state = self._gateway.services[spec.name]
        if state.handler is None and state.operations.find(operation) is not None:
            return ServiceUnavailable.code
        return OperationNotSupported.code


def _hold_of(value: Any, default: float) -> float:
    """A call's `_meta` hold, when it is a number of seconds (0 or more); the default otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return default


def _allowed_hosts(bound_host: str, configured: list[str]) -> list[str]:
    """Host headers taken: the bound host, localhost and `[mcp] allowed_hosts`, each with any port (and none)."""
    bound = f"[{bound_host}]" if ":" in bound_host else bound_host
    hosts: list[str] = []
    for host in (bound, "127.0.0.1", "localhost", "[::1]", *configured):
        has_port = host.endswith(":*") or (host.rpartition(":")[2].isdigit() and not host.endswith("]"))
        for allowed in ((host,) if has_port else (host, f"{host}:*")):
            if allowed not in hosts:
                hosts.append(allowed)
    return hosts


def _read_envelope(body: bytes) -> _Envelope:
    """The method and id of a JSON-RPC message; ParseError for what is not JSON, InvalidRequest for JSON that is
    not one message object (a batch: MCP has none since 2025-06-18)."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise InvalidRequest("Invalid Request: the body must be one JSON-RPC message object")
    # What the SDK would answer with its own codes (a pydantic dump), or with 202 and nothing, leaving the
    # client waiting for ever: refused here as the wire contract says, recorded.
    if payload.get("jsonrpc") != "2.0":
        raise InvalidRequest('Invalid Request: "jsonrpc" must be "2.0"')
    method, rpc_id = payload.get("method"), payload.get("id")
    if "id" in payload and (isinstance(rpc_id, bool) or not isinstance(rpc_id, str | int)):
        raise InvalidRequest("Invalid Request: an id is a string or an integer")
    if method is None and not ("id" in payload and ("result" in payload or "error" in payload)):
        raise InvalidRequest('Invalid Request: a message has a "method" (or is a response: an id and a result)')
    if method is not None and not isinstance(method, str):
        raise InvalidRequest('Invalid Request: "method" must be a string')
    return _Envelope(method, None if rpc_id is None else str(rpc_id), payload)


def _tools_call_problem(envelope: _Envelope) -> InvalidParams | None:
    """A tools/call whose params are not a name and arguments (an object, or null): the SDK answers it without a
    ledger row."""
    params = envelope.message.get("params")
    if isinstance(params, dict) and isinstance(params.get("name"), str) and (
            (arguments := params.get("arguments")) is None or isinstance(arguments, dict)):
        return None
    return InvalidParams('Invalid params for tools/call: "name" (a string) and "arguments" (an object) are expected')


def _plain_answer(call: _PlainCall, work: asyncio.Task[types.CallToolResult]) -> bytes:
    """The JSON-RPC response to a plain call, as the SDK's runner and dispatcher write it: the result sieved
    through the protocol version's surface, the message dumped as the transport dumps it."""
    rpc_id = call.rpc_id
    try:
        result = serialize_server_result(TOOLS_CALL, call.version, work.result().model_dump(
            by_alias=True, mode="json", exclude_none=True))
    except MCPError as error:
        return types.JSONRPCError(jsonrpc="2.0", id=rpc_id, error=error.error).model_dump_json(
            by_alias=True, exclude_unset=True).encode()
    except Exception as exc:
        log.exception("tools/call failed outside the pipeline")
        message = "Handler returned an invalid result" if isinstance(exc, ValidationError) else "Internal error"
        return types.JSONRPCError(jsonrpc="2.0", id=rpc_id, error=types.ErrorData(
            code=types.INTERNAL_ERROR, message=message)).model_dump_json(by_alias=True, exclude_unset=True).encode()
    return types.JSONRPCResponse(jsonrpc="2.0", id=rpc_id, result=result).model_dump_json(
        by_alias=True, exclude_unset=True).encode()


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone (its request body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the SDK: the body already read, then the connection's own messages (its disconnect)."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed

