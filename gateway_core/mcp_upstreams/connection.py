"""One MCP session with one upstream, over the official SDK: a child process on stdio, or a Streamable HTTP
endpoint. It opens (handshake), lists tools page by page, calls tools, pings, and closes; the results and
errors table of spec/mcp.md §3 is applied here, so what leaves this module is the gateway's.

The SDK's transports are anyio task groups, which must be left by the task that entered them: each session
lives in a task of its own, and the others only send requests through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, TextIO

import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INVALID_PARAMS, METHOD_NOT_FOUND, REQUEST_TIMEOUT
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from gateway_core import __version__
from gateway_core.errors import (
    GatewayError,
    OperationNotSupported,
    ServiceUnavailable,
    UpstreamTimeout,
    ValidationFailed,
)
from gateway_core.mcp_upstreams.failures import ConnectionLost, StartFailed
from gateway_core.mcp_upstreams.launch import UpstreamLaunch
from gateway_core.redaction import AgentFacingScrubber, shown_url
from gateway_core.upstream import pooled_limits

MAX_PAGES = 100  # of one tools/list: a server whose cursor never ends cannot hold the listing for ever
ERROR_TEXT_CHARS = 500  # of an isError result's first text block, as the error's message
STDERR_LINE_CHARS = 4000  # one log record of the child's stderr at most
CLIENT_INFO = types.Implementation(name="mcp-console", version=__version__)
REFUSED = "the upstream refused our credentials"
_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR, "critical": logging.CRITICAL, "alert": logging.CRITICAL,
               "emergency": logging.CRITICAL}


def http_client(launch: UpstreamLaunch) -> httpx2.AsyncClient:
    """The upstream's one HTTP client, kept across reconnections: its headers on every request; a read may
    wait 300 s, as the SDK's own default, since a response stream stays open while the tool runs."""
    return httpx2.AsyncClient(headers=dict(launch.headers), timeout=httpx2.Timeout(30, read=300),
                              limits=pooled_limits(httpx2.Limits))


class UpstreamConnection:
    """One session, from `open()` to `close()`; `ended` is set once it is over, whichever side ended it."""

    def __init__(self, launch: UpstreamLaunch, log: logging.Logger, on_tools_changed: Callable[[], None],
                 http: httpx2.AsyncClient | None = None) -> None:
        self._launch = launch
        self._log = log
        self._on_tools_changed = on_tools_changed
        self._http = http
        # What the server writes (stderr, log messages) is logged: its key, echoed, is taken out first.
        self._scrub = AgentFacingScrubber(launch.secrets(), {}).text
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._handshake: asyncio.Timeout | None = None  # while the handshake runs: lose() ends it at once
        self.ended = asyncio.Event()
        self.end_reason = ""
        self.refused_status: int | None = None  # an HTTP 401 or 403 since the last success

    @property
    def usable(self) -> bool:
        """Open, and not ending."""
        return self._client is not None and not self._stop.is_set()

    @property
    def protocol_version(self) -> str | None:
        return self._client.session.protocol_version if self._client is not None else None

    async def open(self, handshake_seconds: float) -> None:
        """Starts the child (or dials) and completes the handshake within `handshake_seconds`; StartFailed if
        not (a child that started is stopped again)."""
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(opened, handshake_seconds),
                                         name=f"mcp-upstream-{self._launch.service}")
        await opened

    def lose(self, reason: str) -> None:
        """Ends the session because it no longer works (its process died, a ping failed)."""
        if not self._stop.is_set():
            self.end_reason = reason
            self._stop.set()
            if self._handshake is not None:
                self._handshake.reschedule(asyncio.get_running_loop().time())

    async def close(self) -> None:
        """Ends the session: the SDK closes the child's stdin, waits 2 s, then SIGTERMs its process group and
        SIGKILLs it 2 s later. Never cancelled mid-way: a cancelled shutdown could leave the child behind."""
        self.lose("closed")
        if self._task is not None:
            await asyncio.wait((self._task,))

    # -- the session's own task --------------------------------------------------------------------

    async def _run(self, opened: asyncio.Future[None], handshake_seconds: float) -> None:
        stderr_write: TextIO | None = None
        stderr_task: asyncio.Task[None] | None = None
        try:
            async with AsyncExitStack() as stack:
                if self._launch.command is not None:
                    read_end, write_end = os.pipe()
                    stderr_write = os.fdopen(write_end, "w")
                    stderr_task = asyncio.create_task(self._log_stderr(read_end))
                    transport: Any = stdio_client(self._stdio_parameters(), errlog=stderr_write)
                else:
                    assert self._launch.url is not None and self._http is not None
                    self._http.event_hooks = {"response": [self._note_status]}
                    transport = streamable_http_client(self._launch.url, http_client=self._http)
                client = Client(transport, mode=self._launch.settings.protocol, message_handler=self._on_message,
                                logging_callback=self._on_log, client_info=CLIENT_INFO, cache=None)
                try:
                    async with asyncio.timeout(handshake_seconds) as self._handshake:
                        await stack.enter_async_context(client)
                finally:
                    self._handshake = None
                    if stderr_write is not None:  # the child has its copy: ours would keep the pipe from ending
                        stderr_write.close()
                        stderr_write = None
                self._client = client
                opened.set_result(None)
                await self._stop.wait()
        except Exception as exc:
            reason = self._describe(exc, handshake_seconds)
            if not opened.done():
                opened.set_exception(StartFailed(reason))
            else:
                self.end_reason = self.end_reason or reason
        except asyncio.CancelledError:
            if not opened.done():
                opened.set_exception(StartFailed("stopped while starting"))
            raise
        finally:
            self._client = None
            if stderr_write is not None:
                stderr_write.close()
            if stderr_task is not None:
                with contextlib.suppress(asyncio.TimeoutError):  # a grandchild may hold the pipe open
                    await asyncio.wait_for(asyncio.shield(stderr_task), 1.0)
            self.ended.set()

    def _stdio_parameters(self) -> StdioServerParameters:
        command = self._launch.command
        assert command is not None
        # The SDK adds HOME, LOGNAME, PATH, SHELL, TERM and USER; `env` is all the child gets beside them,
        # never the gateway's own environment (COOLIFY_API_TOKEN and the other secrets).
        return StdioServerParameters(command=command[0], args=list(command[1:]), env=dict(self._launch.env),
                                     cwd=self._launch.cwd)

    async def _log_stderr(self, read_end: int) -> None:
        """The child's stderr, a line per record, to `gateway_core.mcp.<service>`; its end is the child's end."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(read_end, "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        pending = b""
        try:
            while chunk := await reader.read(65536):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                if len(pending) > STDERR_LINE_CHARS:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    if text := line.decode(errors="replace").rstrip():
                        self._log.info("stderr: %s", self._scrub(text)[:STDERR_LINE_CHARS])
            if text := pending.decode(errors="replace").rstrip():
                self._log.info("stderr: %s", self._scrub(text)[:STDERR_LINE_CHARS])
        finally:
            transport.close()
        self.lose("the process ended")

    async def _note_status(self, response: httpx2.Response) -> None:
        if response.status_code in (401, 403):
            self.refused_status = response.status_code
        elif response.is_success:
            self.refused_status = None

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._on_tools_changed()
        elif isinstance(message, Exception):
            self._log.warning("the session reported %s", type(message).__name__)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self._log.log(_LOG_LEVELS.get(str(params.level), logging.INFO), "log: %s", self._scrub(str(params.data)))

    def _describe(self, exc: BaseException, handshake_seconds: float) -> str:
        """Why the session could not start or ended, from the innermost error of the SDK's nested groups."""
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        if self.refused_status is not None:
            return f"{REFUSED} (HTTP {self.refused_status})"
        if self._stop.is_set():
            return self.end_reason
        if isinstance(exc, TimeoutError):
            return f"no handshake within {handshake_seconds:g} s"
        if isinstance(exc, FileNotFoundError) and self._launch.command is not None:
            return f"cannot start {self._launch.command[0]!r}: no such program"
        if isinstance(exc, OSError) and self._launch.command is not None:
            return f"cannot start {self._launch.command[0]!r}: {exc.strerror or type(exc).__name__}"
        if isinstance(exc, httpx2.TransportError) and self._launch.url is not None:
            return f"cannot reach {shown_url(self._launch.url)}: {type(exc).__name__}"
        if isinstance(exc, MCPError):
            return f"the handshake failed: {exc.message} ({exc.code})"
        return f"the session failed: {type(exc).__name__}"

    # -- requests ---------------------------------------------------------------------------------

    def _session(self) -> Any:
        if self._client is None or self._stop.is_set():
            raise ConnectionLost(self.end_reason or "the session is not open")
        return self._client.session

    async def list_tools(self) -> list[dict[str, Any]]:
        """Every tool, page by page (MAX_PAGES at most, and never a cursor twice), as MCP sends them."""
        session = self._session()
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            params = types.PaginatedRequestParams(cursor=cursor) if cursor is not None else None
            try:
                page = await session.list_tools(params=params)
            except MCPError as exc:
                raise self._error(exc, "tools/list") from None
            tools += [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in page.tools]
            cursor = page.next_cursor
            if cursor is None or cursor in cursors:
                break
            cursors.add(cursor)
        return tools

    async def ping(self) -> None:
        """A ping; on the stateless 2026-07-28 protocol (no ping there), the first page of tools."""
        session = self._session()
        try:
            if self.protocol_version in MODERN_PROTOCOL_VERSIONS:
                await session.list_tools()
            else:
                await session.send_ping()
        except MCPError as exc:
            raise self._error(exc, "ping") from None

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """One tools/call: `{"content": [...], "structuredContent": ...}`, or the gateway's error for what the
        upstream answered. ConnectionLost when the session ended under the call."""
        session = self._session()
        try:
            result = await session.call_tool(name, arguments)
        except MCPError as exc:
            raise self._error(exc, name) from None
        except (RuntimeError, ValidationError) as exc:  # an answer outside MCP, or outside the tool's own schema
            raise ServiceUnavailable(f"{self._launch.service} answered {name} with something it may not: "
                                     f"{str(exc)[:ERROR_TEXT_CHARS]}",
                                     {"service": self._launch.service, "operation": name}) from None
        content = [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]
        if result.is_error:
            text = next((block["text"] for block in content if block.get("type") == "text"), "")
            if text.startswith("Unknown tool"):  # the SDK's servers answer an unknown name so
                self._on_tools_changed()
                raise OperationNotSupported(f"{self._launch.service} no longer has the tool {name}",
                                            {"service": self._launch.service, "operation": name})
            raise ValidationFailed(text[:ERROR_TEXT_CHARS] or f"{name} failed",
                                   {"service": self._launch.service, "operation": name, "content": content})
        return {"content": content, "structuredContent": result.structured_content}

    def _error(self, exc: MCPError, what: str) -> Exception:
        """The spec's table: an upstream's code never passes through as it came."""
        service = self._launch.service
        data = {"service": service, "operation": what}
        if self.refused_status is not None:
            return ServiceUnavailable(f"{service}: {REFUSED} (HTTP {self.refused_status})", data)
        if exc.code == CONNECTION_CLOSED:
            return ConnectionLost(self.end_reason or "the connection closed")
        if exc.code == REQUEST_TIMEOUT:
            return UpstreamTimeout(f"{service} timed out on {what}: {exc.message}", data)
        if exc.code == METHOD_NOT_FOUND or (exc.code == INVALID_PARAMS and exc.message.startswith("Unknown tool")):
            self._on_tools_changed()
            return OperationNotSupported(f"{service} no longer has the tool {what}", data)
        error: GatewayError
        if exc.code == INVALID_PARAMS:
            error = ValidationFailed(f"{service} refused the arguments of {what}: {exc.message}", data)
        else:
            error = ServiceUnavailable(f"{service} answered {what} with an error: {exc.message}",
                                       {**data, "upstreamCode": exc.code})
        return error
