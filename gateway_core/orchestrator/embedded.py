"""Our orchestrator: every route and event of orchestrator-protocol.md on the store, with the fixes it
marks (unique ids, dedupe, expiry, first decision wins, atomic grants, operator auth on every route)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway_core.auth import AGENT_ID_PATTERN, TokenHasher, create_agent
from gateway_core.clock import iso_utc
from gateway_core.orchestrator.models import (
    NewAgentBody,
    PermissionRequestBody,
    PermissionRespondBody,
)
from gateway_core.periodic import Periodic
from gateway_core.store import AlreadyDecided, Grant, PermissionRequest, SQLiteStore, UnknownPermissionRequest

log = logging.getLogger(__name__)

View = Callable[[Request, str], Awaitable[Response]]


def request_event(request: PermissionRequest, agent_name: str | None) -> dict[str, Any]:
    return {"type": "mcp_permission_request", "request_id": request.id, "agent_id": request.agent_id,
            "agent_name": agent_name, "service_name": request.service, "reason": request.reason,
            "timestamp": iso_utc(request.created_at), "operation": request.operation,
            "params_preview": request.params_preview, "risk": request.risk, "expires_at": iso_utc(request.expires_at)}


def response_event(request: PermissionRequest, grant: Grant | None = None) -> dict[str, Any]:
    return {"type": "mcp_permission_response", "request_id": request.id, "agent_id": request.agent_id,
            "service_name": request.service, "approved": request.status == "approved",
            "reason": request.decision_reason, "timestamp": iso_utc(request.decided_at or request.created_at),
            "scope": request.scope, "expires_at": iso_utc(grant.expires_at) if grant and grant.expires_at else None,
            "decided_by": request.decided_by, "status": request.status, "operation": request.operation}


def grant_view(grant: Grant) -> dict[str, Any]:
    return {"id": grant.id, "agent_id": grant.agent_id, "service": grant.service,
            "operations": [grant.operation] if grant.operation else ["*"],
            "expires_at": iso_utc(grant.expires_at) if grant.expires_at else None, "granted_by": grant.granted_by,
            "granted_at": iso_utc(grant.granted_at), "args_hash": grant.args_hash,
            "revoked_at": iso_utc(grant.revoked_at) if grant.revoked_at else None}


ACTING_OPERATOR_HEADER = "x-acting-operator"


def _detail(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status)


class EmbeddedOrchestrator:
    def __init__(self, store: SQLiteStore, hasher: TokenHasher, *, request_ttl_seconds: float = 3600,
                 internal_token: str | None = None, heartbeat_seconds: float = 30,
                 expiry_check_seconds: float = 1.0) -> None:
        self.store = store
        self.clock = store.clock
        self.hasher = hasher
        self.request_ttl_seconds = request_ttl_seconds
        self._internal_token = internal_token  # for the gateway beside us in the same process
        self._clients: set[WebSocket] = set()
        self._client_ids = 0
        self._expiry = Periodic(expiry_check_seconds, self.expire_now, "permission-expiry")
        self._heartbeat = Periodic(heartbeat_seconds, self._send_heartbeat, "orchestrator-heartbeat")

    async def start(self) -> None:
        self._expiry.start()
        self._heartbeat.start()

    async def aclose(self) -> None:
        await self._expiry.stop()
        await self._heartbeat.stop()
        await self.disconnect_clients()

    async def disconnect_clients(self) -> None:
        """Closes every feed connection (clients reconnect, and re-list what is pending)."""
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.close(code=1012, reason="orchestrator restarting")
        self._clients.clear()

    # -- events ---------------------------------------------------------------------------------------

    async def broadcast(self, event: dict[str, Any]) -> None:
        frame = json.dumps(event)

        async def send(client: WebSocket) -> None:
            try:
                async with asyncio.timeout(2):
                    await client.send_text(frame)
            except Exception:  # a client that cannot keep up is dropped; it reconnects and re-lists
                self._clients.discard(client)
                with contextlib.suppress(Exception):
                    await client.close()

        await asyncio.gather(*(send(client) for client in list(self._clients)))

    async def expire_now(self) -> None:
        for request in await self.store.expire_permission_requests(self.clock()):
            await self.broadcast(response_event(request))

    async def _send_heartbeat(self) -> None:
        await self.broadcast({"type": "heartbeat", "timestamp": iso_utc(self.clock()),
                              "active_connections": len(self._clients)})

    # -- auth -----------------------------------------------------------------------------------------

    async def _operator(self, connection: HTTPConnection) -> str | None:
        """The operator's name behind the request's token (header, or ?token= on /ws), or None."""
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if not token and connection.scope["type"] == "websocket":
            token = connection.query_params.get("token", "")
        if not token:
            return None
        if self._internal_token and hmac.compare_digest(token, self._internal_token):
            return "gateway"
        operator = await self.store.operator_by_token_hash(self.hasher.hash(token))
        return f"operator:{operator.name}" if operator else None

    def _route(self, view: View) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            operator = await self._operator(request)
            if operator is None:
                return _detail(401, "An operator token is required: Authorization: Bearer <operator token>")
            acting = request.headers.get(ACTING_OPERATOR_HEADER, "")
            if operator == "gateway" and acting.startswith("operator:") and len(acting) <= 128:
                operator = acting  # the console in our process, acting for its operator: audit who did it
            return await view(request, operator)

        return endpoint

    # -- routes ---------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        async def health(request: Request) -> Response:
            return JSONResponse({"status": "healthy", "timestamp": iso_utc(self.clock()), "service": "orchestrator"})

        return Starlette(routes=[
            Route("/health", health, methods=["GET"]),
            Route("/api/agent/{agent_id}/mcp-permissions", self._route(self._permissions), methods=["GET"]),
            Route("/api/mcp/permission-request", self._route(self._request), methods=["POST"]),
            Route("/api/mcp/permission-respond", self._route(self._respond), methods=["POST"]),
            Route("/api/mcp/permission-requests", self._route(self._pending), methods=["GET"]),
            Route("/api/mcp/grants", self._route(self._grants), methods=["GET"]),
            Route("/api/mcp/grants/{grant_id}", self._route(self._revoke), methods=["DELETE"]),
            Route("/api/mcp/permission-history", self._route(self._history), methods=["GET"]),
            Route("/api/agents", self._route(self._agents), methods=["GET", "POST"]),
            WebSocketRoute("/ws", self._websocket),
        ])

    @staticmethod
    async def _body(request: Request, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(json.loads(await request.body()))
        except (ValueError, ValidationError) as exc:
            errors = exc.errors(include_input=False, include_url=False) if isinstance(exc, ValidationError) else []
            raise _Refused(_detail(422, [{"loc": list(e["loc"]), "msg": e["msg"]} for e in errors]
                                   or "the body is not valid JSON")) from None

    async def _permissions(self, request: Request, operator: str) -> Response:
        agent_id = request.path_params["agent_id"]
        if not AGENT_ID_PATTERN.match(agent_id):
            return _detail(400, "Invalid agent ID format")
        agent = await self.store.get_agent(agent_id)
        if agent is None:
            return _detail(404, f"Agent {agent_id} not found")
        grants = await self.store.list_grants(agent_id=agent_id, active_only=True)
        allowed = sorted({g.service for g in grants if g.operation is None and g.args_hash is None})
        return JSONResponse({"status": "success", "agent_id": agent.id, "agent_name": agent.name,
                             "allowed_mcps": allowed, "grants": [grant_view(g) for g in grants]})

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
            await self.broadcast(request_event(filed, agent.name))
        return JSONResponse({"status": "success", "request_id": filed.id,
                             "message": "Permission request received and pending approval"})

    async def _respond(self, request: Request, operator: str) -> Response:
        try:
            body: PermissionRespondBody = await self._body(request, PermissionRespondBody)
        except _Refused as refused:
            return refused.response
        scope = body.scope or "service"  # as the external orchestrator: an approval grants the service
        expires_at = self.clock() + body.expires_in_seconds if body.expires_in_seconds else None
        if scope == "once" and expires_at is None:
            expires_at = self.clock() + self.request_ttl_seconds
        try:
            decided, grant = await self.store.decide_permission_request(
                body.request_id, body.approved, body.decided_by or operator, body.reason, scope, expires_at)
        except UnknownPermissionRequest:
            return _detail(404, f"Permission request {body.request_id} not found")
        except AlreadyDecided as exc:
            first = exc.request
            return JSONResponse({"detail": f"Permission request {first.id} is already {first.status}",
                                 "request_id": first.id, "status": first.status,
                                 "approved": first.status == "approved", "decided_by": first.decided_by,
                                 "decided_at": iso_utc(first.decided_at) if first.decided_at else None}, 409)
        await self.broadcast(response_event(decided, grant))
        return JSONResponse({"status": "success", "request_id": decided.id, "approved": body.approved,
                             "message": "Permission granted" if body.approved else "Permission denied",
                             "grant_id": grant.id if grant else None})

    async def _pending(self, request: Request, operator: str) -> Response:
        status = request.query_params.get("status", "pending")
        if status != "pending":
            return _detail(400, "only status=pending is listed here; see /api/mcp/permission-history")
        requests = await self.store.list_permission_requests("pending")
        names = {agent.id: agent.name for agent in await self.store.list_agents()}
        return JSONResponse({"status": "success", "requests": [request_event(r, names.get(r.agent_id))
                                                               for r in requests]})

    async def _grants(self, request: Request, operator: str) -> Response:
        grants = await self.store.list_grants(agent_id=request.query_params.get("agent_id"), active_only=True)
        return JSONResponse({"status": "success", "grants": [grant_view(g) for g in grants]})

    async def _revoke(self, request: Request, operator: str) -> Response:
        spent = request.query_params.get("spent") == "true"  # a one-time approval used by its call
        grant = await self.store.revoke_grant(request.path_params["grant_id"], operator,
                                              "grant.used" if spent else "grant.revoked")
        if grant is None:
            return _detail(404, f"Grant {request.path_params['grant_id']} not found or already revoked")
        await self.broadcast({"type": "mcp_permission_revoked", "grant_id": grant.id, "agent_id": grant.agent_id,
                              "service_name": grant.service, "operation": grant.operation,
                              "revoked_by": operator, "timestamp": iso_utc(self.clock())})
        return JSONResponse({"status": "success", "grant_id": grant.id, "message": "Grant revoked"})

    async def _history(self, request: Request, operator: str) -> Response:
        try:
            limit = max(1, min(1000, int(request.query_params.get("limit", 100))))
        except ValueError:
            return _detail(400, "limit must be a number")
        decided = await self.store.list_permission_requests(None, limit)
        history = [{**request_event(r, None), **response_event(r), "type": "decision",
                    "requested_at": iso_utc(r.created_at)} for r in decided]
        return JSONResponse({"status": "success", "history": history})

    async def _agents(self, request: Request, operator: str) -> Response:
        if request.method == "GET":
            agents = await self.store.list_agents()
            return JSONResponse({"status": "success", "agents": [
                {"id": a.id, "name": a.name, "created_at": iso_utc(a.created_at), "active": a.active} for a in agents]})
        try:
            body: NewAgentBody = await self._body(request, NewAgentBody)
            agent, token = await create_agent(self.store, self.hasher, body.name, operator, body.id)
        except _Refused as refused:
            return refused.response
        except ValueError as exc:
            return _detail(400, str(exc))
        return JSONResponse({"id": agent.id, "name": agent.name, "token": token}, 201)

    async def _websocket(self, websocket: WebSocket) -> None:
        if await self._operator(websocket) is None:
            await websocket.close(code=4401, reason="operator token required")
            return
        await websocket.accept()
        self._client_ids += 1
        await websocket.send_json({"type": "connection_established", "client_id": f"client_{self._client_ids}",
                                   "timestamp": iso_utc(self.clock()),
                                   "message": "Connected to mcp-console orchestrator"})
        self._clients.add(websocket)
        try:
            while True:
                await websocket.receive_text()  # clients have nothing to say; this notices them leave
        except WebSocketDisconnect:
            pass
        finally:
            self._clients.discard(websocket)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response
