"""Our orchestrator: every route and event of orchestrator-protocol.md on the store, with the fixes it
marks (unique ids, dedupe, expiry, first decision wins, atomic grants, operator auth on every route). Requests
and grants that end outside a route (expiry, an agent revoked, a grant revoked by the CLI in another process)
are announced on the feed from the store's audit log, which every process on the store writes to."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gateway_core.auth import AGENT_ID_PATTERN, OPERATOR_PREFIX, TokenHasher, create_agent
from gateway_core.errors import ParseError
from gateway_core.models import parse_json
from gateway_core.orchestrator.models import (
    ACTING_OPERATOR_HEADER,
    AgentList,
    AgentPermissions,
    AgentView,
    AlreadyDecidedAnswer,
    ConnectionEstablished,
    Decided,
    DecidedRequest,
    GrantList,
    GrantRevoked,
    GrantView,
    Heartbeat,
    NewAgent,
    NewAgentBody,
    OrchestratorCapabilities,
    OrchestratorHealth,
    PendingPage,
    PermissionHistory,
    PermissionRequestBody,
    PermissionRequestEvent,
    PermissionRespondBody,
    PermissionResponseEvent,
    PermissionRevokedEvent,
    RequestFiled,
)
from gateway_core.periodic import Periodic
from gateway_core.store import AlreadyDecided, Grant, PermissionRequest, SQLiteStore, UnknownPermissionRequest

log = logging.getLogger(__name__)

View = Callable[[Request, str], Awaitable[Response]]


def request_event(request: PermissionRequest, agent_name: str | None) -> PermissionRequestEvent:
    return PermissionRequestEvent(
        request_id=request.id, agent_id=request.agent_id, agent_name=agent_name, service_name=request.service,
        reason=request.reason, timestamp=request.created_at, operation=request.operation,
        params_preview=request.params_preview, risk=request.risk, expires_at=request.expires_at)


def response_event(request: PermissionRequest, grant: Grant | None = None) -> PermissionResponseEvent:
    return PermissionResponseEvent(
        request_id=request.id, agent_id=request.agent_id, service_name=request.service, operation=request.operation,
        approved=request.status == "approved", reason=request.decision_reason,
        timestamp=request.decided_at or request.created_at, scope=request.scope,
        expires_at=grant.expires_at if grant else None, decided_by=request.decided_by,
        status=None if request.status == "pending" else request.status)


def decided_request(request: PermissionRequest, grant_end: tuple[float | None, float | None]) -> DecidedRequest:
    """`grant_end`: the (expires_at, revoked_at) of the grant an approval made."""
    return DecidedRequest(
        request_id=request.id, agent_id=request.agent_id, service_name=request.service, operation=request.operation,
        risk=request.risk, params_preview=request.params_preview, status=request.status, scope=request.scope,
        decided_by=request.decided_by, reason=request.decision_reason, requested_at=request.created_at,
        timestamp=request.decided_at, expires_at=grant_end[0], revoked_at=grant_end[1])


def grant_view(grant: Grant) -> GrantView:
    return GrantView(id=grant.id, agent_id=grant.agent_id, service=grant.service,
                     operations=[grant.operation] if grant.operation else ["*"], expires_at=grant.expires_at,
                     granted_by=grant.granted_by, granted_at=grant.granted_at, args_hash=grant.args_hash,
                     revoked_at=grant.revoked_at)


GREETING = "Connected to Orchestrator Backend"  # the existing orchestrator's words, which its clients may look for

CAPABILITIES = OrchestratorCapabilities(scopes=["once", "operation", "service"], expiry=True, pending_list=True,
                                        history=True, grants=True, audit=True)


def _answer(model: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status)


PAGE_DEFAULT, PAGE_MAX = 500, 1000  # pending requests per page of /api/mcp/permission-requests
_CURSOR = TypeAdapter(tuple[float, str])  # (created_at, id) of the last request of the page before


def _detail(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status)


def _cursor(request: PermissionRequest) -> str:
    return base64.urlsafe_b64encode(_CURSOR.dump_json((request.created_at, request.id))).decode()


def _limit(request: Request, default: int, maximum: int) -> int:
    """The `limit` query parameter within 1..maximum; ValueError when it is not a number."""
    return max(1, min(maximum, int(request.query_params.get("limit", default))))


class EmbeddedOrchestrator:
    def __init__(self, store: SQLiteStore, hasher: TokenHasher, *, request_ttl_seconds: float = 3600,
                 internal_token: str | None = None, heartbeat_seconds: float = 30,
                 expiry_check_seconds: float = 1.0, max_body_bytes: int = 1 << 20, feed_queue_frames: int = 1024,
                 feed_close_timeout_seconds: float = 2.0) -> None:
        self.store = store
        self.clock = store.clock
        self.hasher = hasher
        self.request_ttl_seconds = request_ttl_seconds
        self.max_body_bytes = max_body_bytes
        self.feed_queue_frames = feed_queue_frames
        self.feed_close_timeout_seconds = feed_close_timeout_seconds
        self._internal_token = internal_token  # for the gateway beside us in the same process
        self._clients: set[_Feed] = set()
        self._client_ids = 0
        self._expiry = Periodic(expiry_check_seconds, self.expire_now, "permission-expiry")
        self._heartbeat = Periodic(heartbeat_seconds, self._send_heartbeat, "orchestrator-heartbeat")
        self._announced_seq = 0  # the last audit row whose ending was announced
        self._announcing = asyncio.Lock()

    async def start(self) -> None:
        self._announced_seq = await self.store.audit_seq()
        self._expiry.start()
        self._heartbeat.start()

    async def aclose(self) -> None:
        await self._expiry.stop()
        await self._heartbeat.stop()
        await self.disconnect_clients()

    async def disconnect_clients(self) -> None:
        """Closes every feed connection (clients reconnect, and re-list what is pending); a close that does
        not complete within the close timeout is abandoned."""
        feeds, self._clients = self._clients, set()
        for feed in feeds:
            feed.stop(1012, "orchestrator restarting")
        await asyncio.gather(*(feed.finished.wait() for feed in feeds))

    # -- events ---------------------------------------------------------------------------------------

    def broadcast(self, event: BaseModel) -> None:
        """Queues `event` for every feed client; waits for none of them."""
        frame = event.model_dump_json()
        for feed in list(self._clients):
            if not feed.offer(frame):  # a client that cannot keep up is dropped; it reconnects and re-lists
                self._clients.discard(feed)
                feed.stop(1013, "too slow to keep up with the feed")

    async def expire_now(self) -> None:
        """Expires what is due, announces everything that ended since the last look, and closes the feeds of
        operators whose tokens were revoked since (by the CLI in another process, say)."""
        await self.store.expire_permission_requests(self.clock())
        await self.announce_ended()
        for feed in list(self._clients):
            if feed.token_hash is not None and await self.store.operator_by_token_hash(feed.token_hash) is None:
                self._clients.discard(feed)
                feed.stop(4401, "this operator's token was revoked")

    async def announce_ended(self) -> None:
        """Tells the feed of requests ended (expired, cancelled) and grants ended (revoked, used) since the last
        look, whichever process ended them: a response event each, and a revoked event each."""
        async with self._announcing:  # two looks at once would announce the same rows twice
            self._announced_seq, ended = await self.store.ended_since(self._announced_seq)
            for record in ended:
                self.broadcast(response_event(record) if isinstance(record, PermissionRequest) else
                               PermissionRevokedEvent(grant_id=record.id, agent_id=record.agent_id,
                                                      service_name=record.service, operation=record.operation,
                                                      revoked_by=record.revoked_by, timestamp=record.revoked_at))

    async def _send_heartbeat(self) -> None:
        self.broadcast(Heartbeat(timestamp=self.clock(), active_connections=len(self._clients)))

    # -- auth -----------------------------------------------------------------------------------------

    async def _operator(self, connection: HTTPConnection) -> str | None:
        """The operator's name behind the request's token (header, or ?token= on /ws), or None."""
        found = await self._operator_and_token_hash(connection)
        return found[0] if found else None

    async def _operator_and_token_hash(self, connection: HTTPConnection) -> tuple[str, str | None] | None:
        """The operator's name and its token's hash (None for the gateway's internal token), or None."""
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if not token and connection.scope["type"] == "websocket":
            token = connection.query_params.get("token", "")
        if not token:
            return None
        if self._internal_token and hmac.compare_digest(token, self._internal_token):
            return "gateway", None
        token_hash = self.hasher.hash(token)
        operator = await self.store.operator_by_token_hash(token_hash)
        return (OPERATOR_PREFIX + operator.name, token_hash) if operator else None

    def _route(self, view: View) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            operator = await self._operator(request)
            if operator is None:
                return _detail(401, "An operator token is required: Authorization: Bearer <operator token>")
            acting = request.headers.get(ACTING_OPERATOR_HEADER, "")
            if operator == "gateway" and acting.startswith(OPERATOR_PREFIX) and len(acting) <= 128:
                operator = acting  # the console in our process, acting for its operator: audit who did it
            return await view(request, operator)

        return endpoint

    # -- routes ---------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            return _answer(OrchestratorHealth(timestamp=self.clock()))

        async def capabilities(request: Request, operator: str) -> Response:
            return _answer(CAPABILITIES)

        async def not_found(request: Request, exc: Exception) -> Response:
            # JSON like every other answer, in FastAPI's words (what the client takes for "no such route").
            return _detail(405 if getattr(exc, "status_code", 404) == 405 else 404,
                           "Method Not Allowed" if getattr(exc, "status_code", 404) == 405 else "Not Found")

        return Starlette(exception_handlers={404: not_found, 405: not_found}, routes=[
            Route("/health", health, methods=["GET"]),
            Route("/api/agent/{agent_id}/mcp-permissions", self._route(self._permissions), methods=["GET"]),
            Route("/api/mcp/permission-request", self._route(self._request), methods=["POST"]),
            Route("/api/mcp/permission-respond", self._route(self._respond), methods=["POST"]),
            Route("/api/mcp/permission-requests", self._route(self._pending), methods=["GET"]),
            Route("/api/mcp/grants", self._route(self._grants), methods=["GET"]),
            Route("/api/mcp/grants/{grant_id}", self._route(self._revoke), methods=["DELETE"]),
            Route("/api/mcp/permission-history", self._route(self._history), methods=["GET"]),
            Route("/api/mcp/capabilities", self._route(capabilities), methods=["GET"]),
            Route("/api/agents", self._route(self._agents), methods=["GET", "POST"]),
            WebSocketRoute("/ws", self._websocket),
        ])

    async def _body(self, request: Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(parse_json(await self._read_body(request)))
        except ParseError as exc:
            raise _Refused(_detail(422, exc.message.removeprefix("Parse error: "))) from None
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
            raise _Refused(_detail(422, [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors])) from None

    async def _read_body(self, request: Request) -> bytes:
        """The body, refused as soon as it passes the limit (never read whole, chunked or not)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large()
        received = bytearray()
        async for chunk in request.stream():
            received += chunk
            if len(received) > self.max_body_bytes:
                raise self._too_large()
        return bytes(received)

    def _too_large(self) -> _Refused:
        # Connection: close makes the server drop the connection rather than read the rest of the body.
        return _Refused(JSONResponse({"detail": f"Request body too large: the limit is {self.max_body_bytes} bytes"},
                                     413, headers={"Connection": "close"}))

    async def _permissions(self, request: Request, operator: str) -> Response:
        agent_id = request.path_params["agent_id"]
        if not AGENT_ID_PATTERN.match(agent_id):
            return _detail(400, "Invalid agent ID format")
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            return _detail(404, f"Agent {agent_id} not found")
        grants = await self.store.list_grants(agent_id=agent_id, active_only=True)
        allowed = sorted({g.service for g in grants if g.operation is None and g.args_hash is None})
        return _answer(AgentPermissions(agent_id=agent.id, agent_name=agent.name, allowed_mcps=allowed,
                                        grants=[grant_view(g) for g in grants]))

    async def _request(self, request: Request, operator: str) -> Response:
        try:
            body: PermissionRequestBody = await self._body(request, PermissionRequestBody)
        except _Refused as refused:
            return refused.response
        agent = await self.store.get_agent(body.agent_id)
        if agent is None:
            return _detail(404, f"Agent {body.agent_id} not found")
        filed, created = await self.store.file_permission_request(
            body.agent_id, body.service_name, body.operation, body.args_hash, body.risk, body.reason,
            body.params_preview, self.request_ttl_seconds)
        if created:
            self.broadcast(request_event(filed, agent.name))
        return _answer(RequestFiled(request_id=filed.id))

    async def _respond(self, request: Request, operator: str) -> Response:
        try:
            body: PermissionRespondBody = await self._body(request, PermissionRespondBody)
        except _Refused as refused:
            return refused.response
        scope = body.scope or "service"  # as the external orchestrator: an approval grants the service
        expires_at = self.clock() + body.expires_in_seconds if body.expires_in_seconds else None
        if scope == "once" and expires_at is None:
            expires_at = self.clock() + self.request_ttl_seconds
        try:  # the authenticated operator decides: body.decided_by is ignored, no one signs as another
            decided, grant = await self.store.decide_permission_request(
                body.request_id, body.approved, operator, body.reason, scope, expires_at)
        except UnknownPermissionRequest:
            return _detail(404, f"Permission request {body.request_id} not found")
        except AlreadyDecided as exc:
            first = exc.request
            return _answer(AlreadyDecidedAnswer(
                detail=f"Permission request {first.id} is already {first.status}", request_id=first.id,
                status=first.status, approved=first.status == "approved", decided_by=first.decided_by,
                decided_at=first.decided_at), 409)
        self.broadcast(response_event(decided, grant))
        return _answer(Decided(request_id=decided.id, approved=body.approved,
                               message="Permission granted" if body.approved else "Permission denied",
                               grant_id=grant.id if grant else None))

    async def _pending(self, request: Request, operator: str) -> Response:
        status = request.query_params.get("status", "pending")
        if status != "pending":
            return _detail(400, "only status=pending is listed here; see /api/mcp/permission-history")
        try:
            limit = _limit(request, PAGE_DEFAULT, PAGE_MAX)
        except ValueError:
            return _detail(400, "limit must be a number")
        cursor = request.query_params.get("cursor")
        try:
            after = _CURSOR.validate_json(base64.urlsafe_b64decode(cursor.encode())) if cursor else None
        except ValueError:
            return _detail(400, "cursor must be a next_cursor this route returned")
        requests = await self.store.list_permission_requests("pending", limit + 1, after)
        page = requests[:limit]
        names = {agent.id: agent.name for agent in await self.store.list_agents()}
        return _answer(PendingPage(requests=[request_event(r, names.get(r.agent_id)) for r in page],
                                   next_cursor=_cursor(page[-1]) if len(requests) > limit else None))

    async def _grants(self, request: Request, operator: str) -> Response:
        grants = await self.store.list_grants(agent_id=request.query_params.get("agent_id"), active_only=True)
        return _answer(GrantList(grants=[grant_view(g) for g in grants]))

    async def _revoke(self, request: Request, operator: str) -> Response:
        spent = request.query_params.get("spent") == "true"  # a one-time approval used by its call
        grant = await self.store.revoke_grant(request.path_params["grant_id"], operator,
                                              "grant.used" if spent else "grant.revoked")
        if grant is None:
            return _detail(404, f"Grant {request.path_params['grant_id']} not found or already revoked")
        await self.announce_ended()
        return _answer(GrantRevoked(grant_id=grant.id))

    async def _history(self, request: Request, operator: str) -> Response:
        try:
            limit = _limit(request, 100, 1000)
        except ValueError:
            return _detail(400, "limit must be a number")
        decided = await self.store.list_permission_requests(None, limit)
        ends = await self.store.grant_ends([r.grant_id for r in decided if r.grant_id is not None])
        return _answer(PermissionHistory(history=[decided_request(r, ends.get(r.grant_id or "", (None, None)))
                                                  for r in decided]))

    async def _agents(self, request: Request, operator: str) -> Response:
        if request.method == "GET":
            agents = await self.store.list_agents()
            return _answer(AgentList(agents=[AgentView(id=a.id, name=a.name, created_at=a.created_at, active=a.active)
                                             for a in agents]))
        try:
            body: NewAgentBody = await self._body(request, NewAgentBody)
            agent, token = await create_agent(self.store, self.hasher, body.name, operator, body.id)
        except _Refused as refused:
            return refused.response
        except ValueError as exc:
            return _detail(400, str(exc))
        return _answer(NewAgent(id=agent.id, name=agent.name, token=token), 201)

    async def _websocket(self, websocket: WebSocket) -> None:
        found = await self._operator_and_token_hash(websocket)
        if found is None:
            await websocket.close(code=4401, reason="operator token required")
            return
        await websocket.accept()
        self._client_ids += 1
        feed = _Feed(websocket, self.feed_queue_frames, token_hash=found[1])
        feed.offer(ConnectionEstablished(client_id=f"client_{self._client_ids}", timestamp=self.clock(),
                                         message=GREETING).model_dump_json())
        self._clients.add(feed)
        try:
            await feed.run(self.feed_close_timeout_seconds)
        finally:
            self._clients.discard(feed)


class _Feed:
    """One /ws client: its frames wait in a bounded queue for its own sender task, so a client that stops
    reading delays no one but itself."""

    def __init__(self, websocket: WebSocket, queue_frames: int, token_hash: str | None) -> None:
        self.websocket = websocket
        self.token_hash = token_hash  # checked again each second: a revoked operator's feed is closed
        self.finished = asyncio.Event()
        self._frames: asyncio.Queue[str] = asyncio.Queue(queue_frames)
        self._stopped = asyncio.Event()
        self._close_code, self._close_reason = 1000, ""

    def offer(self, frame: str) -> bool:
        """Queues `frame`; False when the queue is full."""
        try:
            self._frames.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def stop(self, code: int, reason: str) -> None:
        """Ends `run`, which closes the connection with `code`."""
        self._close_code, self._close_reason = code, reason
        self._stopped.set()

    async def run(self, close_timeout: float) -> None:
        """Sends the queued frames until the client leaves, a send fails or `stop()`; after a stop, closes the
        connection, abandoning a close that does not complete within `close_timeout`."""
        tasks = [asyncio.create_task(self._send()), asyncio.create_task(self._until_gone()),
                 asyncio.create_task(self._stopped.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            try:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if self._stopped.is_set():
                    with contextlib.suppress(Exception):  # gone already, or not reading: nothing more to do
                        async with asyncio.timeout(close_timeout):
                            await self.websocket.close(self._close_code, self._close_reason)
            finally:
                self.finished.set()

    async def _send(self) -> None:
        while True:
            await self.websocket.send_text(await self._frames.get())

    async def _until_gone(self) -> None:
        # Clients have nothing to say: reading only notices them leave.
        while (await self.websocket.receive())["type"] != "websocket.disconnect":
            pass


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response
