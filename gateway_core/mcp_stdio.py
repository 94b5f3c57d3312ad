"""`mcp-console mcp-stdio`: an MCP server on standard input and output that forwards to the gateway's front door
(`POST /mcp`), so clients that only start stdio servers use the gateway too (mcp.md §2).

The agent's token comes from MCP_CONSOLE_TOKEN only, never from the command line, where `ps` shows it to every
user. Listings and calls pass through unchanged, progress is relayed; the gateway does all the checking."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final, TextIO, TypeVar

import httpx2
import mcp_types as types
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from gateway_core import __version__
from gateway_core.errors import AuthenticationRequired, ServiceUnavailable
from gateway_core.redaction import shown_url

TOKEN_ENVIRONMENT: Final = "MCP_CONSOLE_TOKEN"
URL_ENVIRONMENT: Final = "MCP_CONSOLE_URL"
UNREACHABLE_RETRY_SECONDS: Final = 30.0  # by default a gateway still starting gets this long (--wait)
RETRY_INTERVAL_SECONDS: Final = 1.0
EXIT_REFUSED: Final = 2  # no token, or the gateway refused it
EXIT_UNREACHABLE: Final = 1
# A held call waits up to [permission] max_wait for an operator, silently unless the client asked for progress.
GATEWAY_TIMEOUT: Final = httpx2.Timeout(30.0, read=600.0)
# Keys of a call's `_meta` that belong to the hop they came on, not to the gateway's.
_HOP_META_PREFIX: Final = "io.modelcontextprotocol/"
_PROGRESS_TOKEN: Final = "progress_token"


def default_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


def _leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside nested exception groups (what the SDK's task groups raise)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


class _Refused(Exception):
    """The gateway refused the token."""


async def _connect(stack: contextlib.AsyncExitStack, url: str, token: str, wait_seconds: float) -> Client:
    """A client of the front door, entered on `stack`. Retries an unreachable gateway for `wait_seconds`; raises
    _Refused when it refuses the token, TimeoutError when it never answered."""
    deadline = time.monotonic() + wait_seconds
    while True:
        attempt = contextlib.AsyncExitStack()
        http = await attempt.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=GATEWAY_TIMEOUT))
        try:
            client = await attempt.enter_async_context(Client(streamable_http_client(url, http_client=http),
                                                              mode="legacy"))
        except Exception as exc:
            await attempt.aclose()
            leaves = list(_leaves(exc))
            refusal = next((leaf for leaf in leaves if isinstance(leaf, MCPError)
                            and leaf.code == AuthenticationRequired.code), None)
            if refusal is not None:
                raise _Refused(refusal.message) from None
            if not any(isinstance(leaf, httpx2.TransportError) for leaf in leaves):
                raise
            if time.monotonic() >= deadline:
                raise TimeoutError from None
            await asyncio.sleep(min(RETRY_INTERVAL_SECONDS, max(deadline - time.monotonic(), 0.0)))
            continue
        stack.push_async_exit(attempt)
        return client


def _forwarded_meta(meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A call's `_meta` for the gateway: the client's own keys, without this hop's (its progress token, the
    2026 envelope)."""
    kept = {key: value for key, value in (meta or {}).items()
            if key != _PROGRESS_TOKEN and not key.startswith(_HOP_META_PREFIX)}
    return kept or None


_Answer = TypeVar("_Answer")


class GatewayLink:
    """The bridge's client of the front door, held in a task of its own. The SDK's client runs its transport in a
    task group: a request the gateway could not be reached for (a restart) failed that group, which took the
    bridge down with it (stdout closed, the process left hanging). Held apart, such a failure ends that client
    only: the request is answered with an error, and the next one connects again (the door is stateless)."""

    def __init__(self, url: str, token: str, wait_seconds: float) -> None:
        self.url, self._token, self._wait_seconds = url, token, wait_seconds
        self._held: asyncio.Task[None] | None = None
        self._client: Client | None = None
        self._stop = asyncio.Event()
        self._connecting = asyncio.Lock()  # requests that find no client wait for one connection, not each their own

    async def client(self) -> Client:
        """The live client, connecting first if there is none (the first time, or after a failure): _Refused
        when the gateway refuses the token, TimeoutError when it did not answer within the wait."""
        async with self._connecting:
            if self._client is None or self._held is None or self._held.done():
                ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
                self._stop = asyncio.Event()  # the old holder keeps its own (set): it ends
                self._held = asyncio.create_task(self._hold(ready, self._stop))
                self._client = await ready
            return self._client

    def lost(self, client: Client) -> None:
        """`client` failed a request: the next one connects again."""
        if client is self._client:
            self._client = None
            self._stop.set()

    async def aclose(self) -> None:
        self._stop.set()
        if self._held is not None:
            with contextlib.suppress(Exception):
                await self._held

    async def _hold(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    client = await _connect(stack, self.url, self._token, self._wait_seconds)
                except BaseException as exc:
                    ready.set_exception(exc)
                    return
                ready.set_result(client)
                await stop.wait()
        except Exception:  # its transport failed: the request that met it is answered, the next reconnects
            pass

    async def forward(self, send: Callable[[Client], Awaitable[_Answer]], what: str, reads: bool = False) -> _Answer:
        """`send` on the live client; a gateway that cannot be reached (or went away mid-request) is -32001. What
        only `reads` is sent once more on a new connection (waiting for a restarting gateway)."""
        for attempt in (1, 2):
            try:
                client = await self.client()
            except (TimeoutError, _Refused) as exc:
                reason = "it refused the token" if isinstance(exc, _Refused) else "no answer"
                raise MCPError(ServiceUnavailable.code, f"the gateway at {shown_url(self.url)} cannot be reached "
                               f"({reason}): {what} was not sent") from None
            try:
                return await send(client)
            except MCPError as error:
                if error.code != types.CONNECTION_CLOSED:
                    raise
            except Exception as exc:
                if not any(isinstance(leaf, httpx2.TransportError) for leaf in _leaves(exc)):
                    raise
            self.lost(client)
            if not reads or attempt == 2:
                break
        raise MCPError(ServiceUnavailable.code, f"the connection to the gateway at {shown_url(self.url)} was lost "
                       f"during {what}" + ("" if reads else ": it may have run; check before repeating it"))


def bridge_server(gateway: GatewayLink, instructions: str | None) -> Server[Any]:
    """The stdio side: lists and calls through `gateway`, results as they came, progress relayed."""

    async def list_tools(ctx: ServerRequestContext[Any],
                         params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        cursor = params.cursor if params is not None else None
        return await gateway.forward(lambda client: client.session.list_tools(
            params=types.PaginatedRequestParams(cursor=cursor)), "the listing", reads=True)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        async def relay(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        wants_progress = (ctx.meta or {}).get(_PROGRESS_TOKEN) is not None
        request = types.CallToolRequest(params=types.CallToolRequestParams.model_validate(
            {"name": params.name, "arguments": params.arguments, "_meta": _forwarded_meta(params.meta)}))
        # send_request, not session.call_tool: that one checks structured content against outputSchema (listing
        # again to find it), which is the end client's business; the bridge passes the result on as it is.
        return await gateway.forward(lambda client: client.session.send_request(
            request, types.CallToolResult, progress_callback=relay if wants_progress else None),
            f"the call of {params.name}")

    return Server("mcp-console", version=__version__, instructions=instructions,
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def run_bridge(url: str, token: str | None, errors: TextIO = sys.stderr,
                     wait_seconds: float = UNREACHABLE_RETRY_SECONDS) -> int:
    """Serves stdio until its input ends; the process's exit code. A gateway not up yet is waited for
    `wait_seconds`."""
    if not token:
        print(f"mcp-console mcp-stdio: set {TOKEN_ENVIRONMENT} to the agent's token (mcp-console agents add "
              "NAME prints it); it is never taken from the command line", file=errors, flush=True)
        return EXIT_REFUSED
    gateway = GatewayLink(url, token, wait_seconds)
    try:
        try:
            instructions = (await gateway.client()).instructions
        except _Refused as refusal:
            print(f"mcp-console mcp-stdio: the gateway at {shown_url(url)} refused the token in "
                  f"{TOKEN_ENVIRONMENT} ({refusal})", file=errors, flush=True)
            return EXIT_REFUSED
        except TimeoutError:
            print(f"mcp-console mcp-stdio: no gateway answered at {shown_url(url)} within "
                  f"{wait_seconds:g} s (--url or {URL_ENVIRONMENT} names another; --wait waits longer)",
                  file=errors, flush=True)
            return EXIT_UNREACHABLE
        server = bridge_server(gateway, instructions)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await gateway.aclose()
    return 0
