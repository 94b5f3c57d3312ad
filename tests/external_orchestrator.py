"""A stand-in for the team's existing orchestrator, written to its shapes: three routes and /ws, flat events
with float epoch timestamps and no `operation` or `decided_by`, `perm_req_<seconds>_<agent_id[:8]>` ids (two
requests in one second share one), no list route, no capabilities route, no auth, broadcasts dropped when no
client listens, UUID agent ids only (400 "Invalid agent ID format" otherwise), "not found" answered as a 500
wrapping the 404 (`{"detail": "404: ..."}`), and a respond's `scope` and `expires_in_seconds` ignored: an
approval grants the whole service, forever."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway_core.clock import Clock, system_clock


def _is_uuid(agent_id: str) -> bool:
    try:
        uuid.UUID(agent_id)
    except ValueError:
        return False
    return True


def _invalid_agent_id() -> JSONResponse:
    return JSONResponse({"detail": "Invalid agent ID format"}, 400)


def _not_found(what: str) -> JSONResponse:
    # Its handlers raise HTTPException(404) inside a try whose `except Exception` answers 500 with str(exc).
    return JSONResponse({"detail": f"404: {what} not found"}, 500)


class ExternalOrchestrator:
    def __init__(self, clock: Clock = system_clock) -> None:
        """`clock` names requests and stamps events (a frozen one files every request in the same second)."""
        self.clock = clock
        self.agents: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self.filed: list[str] = []  # every request id handed out, in order (the same one again within a second)
        self.clients: set[WebSocket] = set()

    def add_agent(self, agent_id: str, name: str) -> None:
        self.agents[agent_id] = {"name": name, "metadata": {"allowed_mcps": []}}

    async def broadcast(self, event: dict[str, Any]) -> None:
        for client in list(self.clients):
            try:
                await client.send_text(json.dumps(event))
            except Exception:
                self.clients.discard(client)

    def app(self) -> Starlette:
        async def permissions(request: Request) -> JSONResponse:
            agent_id = request.path_params["agent_id"]
            if not _is_uuid(agent_id):
                return _invalid_agent_id()
            agent = self.agents.get(agent_id)
            if agent is None:
                return _not_found(f"Agent {agent_id}")
            return JSONResponse({"status": "success", "agent_id": agent_id, "agent_name": agent["name"],
                                 "allowed_mcps": agent["metadata"]["allowed_mcps"]})

        async def permission_request(request: Request) -> JSONResponse:
            body = await request.json()
            if not _is_uuid(body["agent_id"]):
                return _invalid_agent_id()
            request_id = f"perm_req_{int(self.clock())}_{body['agent_id'][:8]}"
            self.requests[request_id] = body
            self.filed.append(request_id)
            await self.broadcast({"type": "mcp_permission_request", "request_id": request_id,
                                  "agent_id": body["agent_id"],
                                  "agent_name": self.agents.get(body["agent_id"], {}).get("name"),
                                  "service_name": body["service_name"], "reason": body["reason"],
                                  "timestamp": self.clock()})
            return JSONResponse({"status": "success", "request_id": request_id,
                                 "message": "Permission request received and pending approval"})

        async def permission_respond(request: Request) -> JSONResponse:
            body = await request.json()
            pending = self.requests.pop(body["request_id"], None)
            if pending is None:
                return _not_found("Permission request")
            allowed = self.agents[pending["agent_id"]]["metadata"]["allowed_mcps"]
            if body["approved"] and pending["service_name"] not in allowed:
                allowed.append(pending["service_name"])
            await self.broadcast({"type": "mcp_permission_response", "request_id": body["request_id"],
                                  "agent_id": pending["agent_id"], "service_name": pending["service_name"],
                                  "approved": body["approved"], "reason": body.get("reason"),
                                  "timestamp": self.clock()})
            return JSONResponse({"status": "success", "request_id": body["request_id"], "approved": body["approved"],
                                 "message": "Permission granted" if body["approved"] else "Permission denied"})

        async def feed(websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text(json.dumps({"type": "connection_established", "client_id": "client_1",
                                                  "timestamp": self.clock(),
                                                  "message": "Connected to Orchestrator Backend"}))
            await websocket.send_text(json.dumps({"type": "agent_log", "agent_id": "x", "line": "noise"}))
            self.clients.add(websocket)
            try:
                while True:
                    await websocket.receive_text()
            except WebSocketDisconnect:
                self.clients.discard(websocket)

        return Starlette(routes=[
            Route("/api/agent/{agent_id}/mcp-permissions", permissions, methods=["GET"]),
            Route("/api/mcp/permission-request", permission_request, methods=["POST"]),
            Route("/api/mcp/permission-respond", permission_respond, methods=["POST"]),
            WebSocketRoute("/ws", feed),
        ])
