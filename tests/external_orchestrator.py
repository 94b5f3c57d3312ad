"""A stand-in for the team's existing orchestrator, written to its shapes: three routes and /ws, flat
events with float epoch timestamps, `perm_req_<seconds>_<agent_id[:8]>` ids, no list route, no auth,
and broadcasts dropped when no client listens."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


class ExternalOrchestrator:
    def __init__(self) -> None:
        self.agents: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
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
            agent = self.agents.get(agent_id)
            if agent is None:
                return JSONResponse({"detail": f"Agent {agent_id} not found"}, 404)
            return JSONResponse({"status": "success", "agent_id": agent_id, "agent_name": agent["name"],
                                 "allowed_mcps": agent["metadata"]["allowed_mcps"]})

        async def permission_request(request: Request) -> JSONResponse:
            body = await request.json()
            request_id = f"perm_req_{int(time.time())}_{body['agent_id'][:8]}"
            self.requests[request_id] = body
            await self.broadcast({"type": "mcp_permission_request", "request_id": request_id,
                                  "agent_id": body["agent_id"],
                                  "agent_name": self.agents.get(body["agent_id"], {}).get("name"),
                                  "service_name": body["service_name"], "reason": body["reason"],
                                  "timestamp": time.time()})
            return JSONResponse({"status": "success", "request_id": request_id,
                                 "message": "Permission request received and pending approval"})

        async def permission_respond(request: Request) -> JSONResponse:
            body = await request.json()
            pending = self.requests.pop(body["request_id"], None)
            if pending is None:
                return JSONResponse({"detail": "Permission request not found"}, 404)
            if body["approved"]:
                self.agents[pending["agent_id"]]["metadata"]["allowed_mcps"].append(pending["service_name"])
            await self.broadcast({"type": "mcp_permission_response", "request_id": body["request_id"],
                                  "agent_id": pending["agent_id"], "service_name": pending["service_name"],
                                  "approved": body["approved"], "reason": body.get("reason"),
                                  "timestamp": time.time()})
            return JSONResponse({"status": "success", "request_id": body["request_id"], "approved": body["approved"],
                                 "message": "Permission granted" if body["approved"] else "Permission denied"})

        async def feed(websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text(json.dumps({"type": "connection_established", "client_id": "client_1",
                                                  "timestamp": time.time(),
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
