"""The upstream tests' MCP server (spec/mcp.md §5), written with the SDK's MCPServer: one tool per behaviour the
gateway has to handle. Run as a script: over stdio by default (a line on stderr at start), or over Streamable
HTTP with `--http` (`--stateless`, `--key KEY`: every request must carry `Authorization: Bearer KEY`), printing
`listening on <port>` once it accepts connections.

It imports nothing from the project: the gateway starts it with a bare environment (no PYTHONPATH)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.utilities.types import Image
from mcp_types import ToolAnnotations
from pydantic import Field

# A 1x1 transparent PNG.
PIXEL = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                      "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")


def build_server() -> MCPServer:
    server = MCPServer("testsrv", version="1.0")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @server.tool()
    def note(text: Annotated[str, Field(min_length=1)]) -> str:
        """Keeps a note (no annotations: the gateway takes it for a write)."""
        return f"noted: {text}"

    @server.tool(annotations=ToolAnnotations(destructiveHint=True))
    def wipe(target: str) -> str:
        """Wipes a target."""
        return f"wiped {target}"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def slow(seconds: float, ctx: Context) -> str:
        """Sleeps, reporting progress each tenth of a second."""
        steps = max(1, round(seconds * 10))
        for step in range(steps):
            await ctx.report_progress(step, steps)
            await asyncio.sleep(seconds / steps)
        return f"slept {seconds}"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def boom() -> str:
        """Always fails, as a tool result with isError."""
        raise ToolError("boom: the tool failed on purpose")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def refuse(message: str) -> str:
        """Writes `message` to stderr, then fails with it as its error text (a tool result with isError)."""
        print(f"refusing: {message}", file=sys.stderr, flush=True)
        raise ToolError(message)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def spelled(user_name: Annotated[str, Field(validation_alias="user.name")],
                key: Annotated[str, Field(validation_alias="ключ")] = "", extra: dict[str, Any] | None = None) -> str:
        """Takes properties named as no identifier is ("user.name", "ключ"), and an object."""
        return f"{user_name} {key} {json.dumps(extra) if extra else ''}".strip()

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def picture() -> Image:
        """A one-pixel PNG."""
        return Image(data=PIXEL, format="png")

    @server.tool()
    async def grow(name: str, ctx: Context, destructive: bool = False, description: str = "") -> str:
        """Adds a tool called `name` (read-only, or destructive: replacing one of that name; described as
        `description`, or "grown as <name>"), then tells the client the tool list changed."""

        def grown(text: str = "") -> str:
            return f"{name} says {text}"

        if destructive:
            server.remove_tool(name)
        server.add_tool(grown, name=name, description=description or f"grown as {name}",
                        annotations=ToolAnnotations(destructiveHint=True) if destructive
                        else ToolAnnotations(readOnlyHint=True))
        await ctx.session.send_tool_list_changed()
        return f"grew {name}"

    @server.tool()
    def shrink(name: str) -> str:
        """Removes the tool called `name` without telling the client (a call to it finds it gone)."""
        server.remove_tool(name)
        return f"removed {name}"

    @server.tool(annotations=ToolAnnotations(destructiveHint=True))
    def crash() -> str:
        """Ends the process at once, mid-call."""
        os._exit(3)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def crash_once(marker: str) -> str:
        """Ends the process mid-call unless the file `marker` exists (which it makes first): the process the
        gateway starts next answers."""
        if os.path.exists(marker):
            return "answered after a restart"
        open(marker, "w").close()
        os._exit(3)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def env() -> dict[str, Any]:
        """This process's id and its whole environment."""
        return {"pid": os.getpid(), "environ": dict(os.environ)}

    return server


class RequireKey:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <key>` (else 401, as a real API says)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"").decode() != f"Bearer {self.key}":
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"error": "invalid key"}'})
                return
        await self.app(scope, receive, send)


async def serve_http(server: MCPServer, stateless: bool, key: str | None) -> None:
    import uvicorn

    app: Any = server.streamable_http_app(stateless_http=stateless)
    if key is not None:
        app = RequireKey(app, key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with server.session_manager.run():
        serving = asyncio.create_task(uvicorn_server.serve(sockets=[sock]))
        while not uvicorn_server.started:
            await asyncio.sleep(0.01)
        print(f"listening on {sock.getsockname()[1]}", flush=True)
        await serving


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--key")
    args = parser.parse_args()
    server = build_server()
    if args.http:
        asyncio.run(serve_http(server, args.stateless, args.key))
    else:
        print(f"testsrv: started, pid {os.getpid()}", file=sys.stderr, flush=True)
        server.run("stdio")


if __name__ == "__main__":
    main()
