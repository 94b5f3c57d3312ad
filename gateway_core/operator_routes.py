"""The operator API on the gateway's port (under /operator): what an attached console reads and does.

Every route takes an operator token (`mcp-console operators add`) and nothing else: an agent's token is
refused here, as an operator's is on the agent routes. A refused credential is audited like an agent's.
What an operator does here is done as `operator:<name>`, the name of the token's operator: operations are
costed, recorded and audited as that operator, decisions and revocations too. Nothing secret is sent: an
operation's result is redacted before it leaves, as the console would show it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway_core import __version__
from gateway_core.auth import CredentialRefused
from gateway_core.errors import GatewayError
from gateway_core.gateway import Gateway, OperatorCaller
from gateway_core.models import ExecuteParams, parse_json
from gateway_core.operator_feed import Gone
from gateway_core.operator_models import (
    AGENTS_PATH,
    AUDIT_PATH,
    CLOSE_STOPPING,
    CLOSE_UNAUTHENTICATED,
    DECIDE_PATH,
    EVENTS_PATH,
    GRANTS_PATH,
    HISTORY_PATH,
    REVOKE_PATH,
    RUN_PATH,
    SNAPSHOT_PATH,
    AgentNames,
    AuditPage,
    DaySnapshot,
    GrantPage,
    HistoryPage,
    OperatorProblem,
    OperatorSnapshot,
    Resync,
    RevokeBody,
    RunAnswer,
    RunBody,
    RunError,
    ServiceSnapshot,
    ToolSnapshot,
)
from gateway_core.orchestrator.client import (
    DecisionConflict,
    OrchestratorUnavailable,
    RouteMissing,
    UnknownGrant,
    UnknownRequest,
)
from gateway_core.orchestrator.models import PermissionRespondBody
from gateway_core.permission_gate import DecisionNotSupported
from gateway_core.redaction import redacted
from gateway_core.store import Operator, UsageTotals
from gateway_core.upstream_tool import UpstreamTool

log = logging.getLogger(__name__)

BATCH_EVENTS = 500  # the most events in one WebSocket message
FLUSH_SECONDS = 0.02  # events are gathered this long into one message (at most 50 messages a second)
RECHECK_SECONDS = 5.0  # how often a quiet stream checks that its operator's token is still in force
MAX_LISTED = 1000  # the most audit events or decisions one query returns


class _Refused(Exception):
    def __init__(self, status: int, problem: OperatorProblem) -> None:
        super().__init__(problem.message)
        self.status = status
        self.problem = problem


def _refused(status: int, error: Any, message: str, first: dict[str, Any] | None = None) -> _Refused:
    return _Refused(status, OperatorProblem(error=error, message=message, first=first))


def _answer(model: BaseModel | None, status: int = 200) -> Response:
    if model is None:
        return Response(status_code=204)
    return Response(model.model_dump_json(), status, media_type="application/json")


def snapshot(gateway: Gateway, operator: str, address: str | None) -> OperatorSnapshot:
    """Everything a console shows, as of the feed's last event. Built in one step (nothing awaited), so that
    no event can land between the state read here and the number it is read as of."""
    feed, health, usage = gateway.operator_feed, gateway.health, gateway.usage
    return OperatorSnapshot(
        seq=feed.seq, instance=feed.instance, version=__version__, operator=operator, address=address,
        services=[ServiceSnapshot(
            name=name, description=state.spec.description, location=state.spec.location,
            status=gateway.service_status(name), health=health.reports.get(name),
            latency_history=list(health.latency_history.get(name, ())),
            used=usage.by_service.get(name) or UsageTotals(), operations=list(state.operations),
            tools=[ToolSnapshot.of(tool) for tool in state.operations.values() if isinstance(tool, UpstreamTool)],
            missing_settings=list(state.missing_settings)) for name, state in gateway.services.items()],
        today=DaySnapshot(starts=usage.today.starts, ends=usage.today.ends, total=usage.today.total,
                          by_caller=usage.today.by_caller),
        agents_served=gateway.authenticator.active_agent_count, recent_calls=list(feed.recent_calls),
        pending=gateway.permissions.pending, link=gateway.link_state, capabilities=gateway.permissions.capabilities,
        operators=list(feed.attached))


def operator_routes(gateway: Gateway, max_body_bytes: int) -> list[BaseRoute]:
    def authenticate(connection: HTTPConnection) -> Operator:
        try:
            return gateway.authenticator.operator(connection.headers.get("authorization"))
        except CredentialRefused as refusal:
            remote = connection.client.host if connection.client else None
            gateway.recorder.record_audit(refusal.audit_event(remote, gateway.clock()))
            raise _refused(401, "unauthenticated", refusal.message) from None

    async def body_of(request: Request, model: type[BaseModel]) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise _refused(413, "too_large", f"Request body too large: the limit is {max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise _refused(413, "too_large", f"Request body too large: the limit is {max_body_bytes} bytes")
        try:
            return model.model_validate(parse_json(bytes(body)))
        except (GatewayError, ValidationError, ValueError) as exc:
            raise _refused(400, "invalid", f"Invalid request body: {exc}") from None

    def route(view: Callable[[Request, Operator], Awaitable[BaseModel | None]]) -> Callable[
        [Request], Awaitable[Response]
    ]:
        async def endpoint(request: Request) -> Response:
            try:
                operator = authenticate(request)
                return _answer(await view(request, operator))
            except _Refused as refused:
                headers = {"connection": "close"} if refused.status == 413 else None
                return Response(refused.problem.model_dump_json(exclude_none=True), refused.status, headers,
                                media_type="application/json")

        return endpoint

    def limit_of(request: Request, default: int) -> int:
        text = request.query_params.get("limit", str(default))
        if not text.isdigit() or not 1 <= int(text) <= MAX_LISTED:
            raise _refused(400, "invalid", f"limit is a number from 1 to {MAX_LISTED}")
        return int(text)

    def acting(operator: Operator) -> str:
        return OperatorCaller(operator.name).caller_id

    async def get_snapshot(request: Request, operator: Operator) -> BaseModel:
        return snapshot(gateway, operator.name, request.url.netloc)

    async def run(request: Request, operator: Operator) -> BaseModel:
        body: RunBody = await body_of(request, RunBody)
        outcome = await gateway.execute_as_operator(
            OperatorCaller(operator.name, body.read_only),
            ExecuteParams(service=body.service, operation=body.operation, args=body.arguments))
        error = outcome.error
        return RunAnswer(
            record=outcome.record,
            result=outcome.result.model_copy(update={"data": redacted(outcome.result.data)})
            if outcome.result is not None else None,
            error=RunError(code=error.code, message=error.message, data=redacted(error.data))
            if error is not None else None)

    async def orchestrator_call(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except DecisionConflict as conflict:
            raise _refused(409, "conflict", f"Already decided: {conflict}", conflict.first) from None
        except UnknownRequest as exc:
            raise _refused(404, "unknown_request", str(exc)) from None
        except UnknownGrant as exc:
            raise _refused(404, "unknown_grant", str(exc)) from None
        except DecisionNotSupported as exc:
            raise _refused(422, "not_supported", str(exc)) from None
        except RouteMissing as exc:
            raise _refused(501, "route_missing", str(exc) or "the orchestrator has no such route") from None
        except OrchestratorUnavailable as exc:
            raise _refused(503, "orchestrator_unavailable", str(exc)) from None

    async def decide(request: Request, operator: Operator) -> BaseModel:
        body: PermissionRespondBody = await body_of(request, PermissionRespondBody)
        decided: BaseModel = await orchestrator_call(gateway.permissions.decide(
            body.request_id, body.approved, operator_id=acting(operator), reason=body.reason, scope=body.scope,
            expires_in_seconds=body.expires_in_seconds))
        return decided

    async def revoke(request: Request, operator: Operator) -> None:
        body: RevokeBody = await body_of(request, RevokeBody)
        await orchestrator_call(gateway.permissions.revoke(body.grant_id, operator_id=acting(operator)))

    async def audit(request: Request, operator: Operator) -> BaseModel:
        limit = limit_of(request, 200)
        await gateway.recorder.flush()  # what just happened belongs in the answer too
        return AuditPage(events=await gateway.store.list_audit(limit))

    async def grants(request: Request, operator: Operator) -> BaseModel:
        orchestrator = gateway.orchestrator
        if orchestrator is None:
            raise _refused(501, "route_missing", "no orchestrator is linked")
        return GrantPage(grants=await orchestrator_call(orchestrator.list_grants()))

    async def history(request: Request, operator: Operator) -> BaseModel:
        limit = limit_of(request, 200)
        orchestrator = gateway.orchestrator
        if orchestrator is None:
            raise _refused(501, "route_missing", "no orchestrator is linked")
        return HistoryPage(decisions=await orchestrator_call(orchestrator.permission_history(limit)))

    async def agents(request: Request, operator: Operator) -> BaseModel:
        return AgentNames(names={agent.id: agent.name for agent in await gateway.store.list_agents()},
                          served=gateway.authenticator.active_agent_count)

    async def events(websocket: WebSocket) -> None:
        """Streams the feed from `?after=<seq>&instance=<id>` (the snapshot's): every event after it, then each
        as it comes. Numbers from another run of the gateway (it restarted) get a resync."""
        await websocket.accept()
        try:
            operator = authenticate(websocket)
        except _Refused as refused:
            await websocket.close(CLOSE_UNAUTHENTICATED, refused.problem.message[:120])
            return
        after_text = websocket.query_params.get("after", "")
        if not after_text.isdigit():
            await websocket.close(1008, "after=<seq> is required: the seq of the snapshot to resume from")
            return
        feed = gateway.operator_feed
        if websocket.query_params.get("instance") != feed.instance:
            await websocket.send_text(Resync(oldest=feed.seq + 1).model_dump_json())
            await websocket.close(1000, "resync")
            return
        feed.attach(operator.name)
        reader = asyncio.create_task(_until_closed(websocket))
        try:
            await _stream(websocket, int(after_text), operator, reader)
        except WebSocketDisconnect:
            pass
        finally:
            reader.cancel()
            feed.detach(operator.name)

    async def _stream(websocket: WebSocket, cursor: int, operator: Operator, reader: asyncio.Task[None]) -> None:
        feed = gateway.operator_feed
        while not reader.done():
            if feed.stopped:
                await websocket.close(CLOSE_STOPPING, "the gateway is stopping")
                return
            if not gateway.authenticator.operator_in_force(operator.id):
                await websocket.close(CLOSE_UNAUTHENTICATED, "this operator's token was revoked")
                return
            try:
                lines = feed.since(cursor, BATCH_EVENTS)
            except Gone as gone:
                await websocket.send_text(Resync(oldest=gone.oldest).model_dump_json())
                await websocket.close(1000, "resync")
                return
            if lines:
                await websocket.send_text('{"type":"events","events":[' + ",".join(lines) + "]}")
                cursor += len(lines)
                await asyncio.sleep(FLUSH_SECONDS)  # what comes meanwhile goes in the next message
                continue
            waiting = asyncio.ensure_future(feed.wait_beyond(cursor))
            await asyncio.wait([waiting, reader], timeout=RECHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()

    return [
        Route(SNAPSHOT_PATH, route(get_snapshot), methods=["GET"]),
        Route(RUN_PATH, route(run), methods=["POST"]),
        Route(DECIDE_PATH, route(decide), methods=["POST"]),
        Route(REVOKE_PATH, route(revoke), methods=["POST"]),
        Route(AUDIT_PATH, route(audit), methods=["GET"]),
        Route(GRANTS_PATH, route(grants), methods=["GET"]),
        Route(HISTORY_PATH, route(history), methods=["GET"]),
        Route(AGENTS_PATH, route(agents), methods=["GET"]),
        WebSocketRoute(EVENTS_PATH, events),
    ]


async def _until_closed(websocket: WebSocket) -> None:
    """Reads (and ignores) what the console sends, until it closes: how a closed stream is noticed at once."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
