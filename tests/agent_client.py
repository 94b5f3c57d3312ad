"""An agent calling one service through the gateway over real HTTP, as existing agents do: `mcp.execute` on
`/mcp/rpc`, and the slash form on `/mcp/execute`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class AgentClient:
    url: str
    token: str
    service: str
    timeout: float = 30.0

    async def call(self, operation: str, args: Any = None, **params: Any) -> httpx.Response:
        """`params`: the rest of mcp.execute's params (`database`, `options`, or any top-level key)."""
        body: dict[str, Any] = {"service": self.service, "operation": operation, **params}
        if args is not None:
            body["args"] = args
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout,
                                     headers={"authorization": f"Bearer {self.token}"}) as client:
            return await client.post("/mcp/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
                                                       "params": body})

    async def slash(self, command: str, **options: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=self.timeout,
                                     headers={"authorization": f"Bearer {self.token}"}) as client:
            return await client.post("/mcp/execute", json={"command": command, "id": 1, "options": options or None})

    async def result(self, operation: str, args: Any = None, **params: Any) -> dict[str, Any]:
        """The whole `result` (data and metadata) of a call that must succeed."""
        response = await self.call(operation, args, **params)
        body = response.json()
        assert response.status_code == 200 and "result" in body, body
        result: dict[str, Any] = body["result"]
        return result

    async def data(self, operation: str, args: Any = None, **params: Any) -> Any:
        return (await self.result(operation, args, **params))["data"]

    async def error(self, operation: str, args: Any = None, **params: Any) -> dict[str, Any]:
        """The error object of a call that must fail, with the HTTP status as `http`."""
        response = await self.call(operation, args, **params)
        body = response.json()
        assert "error" in body, body
        error: dict[str, Any] = body["error"]
        error["http"] = response.status_code
        return error


@dataclass
class ServiceClient(AgentClient):
    """An agent as the service tests use it: keyword arguments are the call's options (`wait=5`), arguments
    default to none (`[]`), and the slash form answers its body."""

    async def call(self, operation: str, args: Any = None, **options: Any) -> httpx.Response:
        return await super().call(operation, [] if args is None else args, **({"options": options} if options else {}))

    async def slash_answer(self, command: str) -> dict[str, Any]:
        answer: dict[str, Any] = (await self.slash(command)).json()
        return answer
