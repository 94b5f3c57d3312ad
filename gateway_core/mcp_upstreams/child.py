"""One upstream session kept alive: started at once or on first use, and started again with backoff (1, 2,
4 ... 60 s with jitter, from 1 s again after 10 minutes up) whenever it ends; `down` after 3 starts in a row
failed, `retrying` in between. Calls wait here for a session, and a slot of `max_concurrency`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from gateway_core.errors import ServiceUnavailable
from gateway_core.lazy_import import import_in_thread
from gateway_core.mcp_upstreams.failures import StartFailed
from gateway_core.mcp_upstreams.launch import UpstreamLaunch

if TYPE_CHECKING:
    import httpx2

    from gateway_core.mcp_upstreams.connection import UpstreamConnection

ChildState = Literal["idle", "starting", "up", "retrying", "down", "stopped"]
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
STEADY_SECONDS = 600.0  # up this long, and the next restart waits FIRST_BACKOFF_SECONDS again
DOWN_AFTER_FAILED_STARTS = 3


def backoff_seconds(attempt: int) -> float:
    """The wait before restart number `attempt` (0 first): doubling to MAX_BACKOFF_SECONDS, jittered by up to
    a fifth either way so that upstreams that failed together do not restart together."""
    return min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2.0 ** min(attempt, 16)) * random.uniform(0.8, 1.2)


async def _connection_module() -> None:
    """Imports the MCP SDK (about a second) and jsonschema (the listing's schema checks need it next) in a
    thread, so the event loop (the console's) keeps drawing."""
    await import_in_thread("jsonschema", "gateway_core.mcp_upstreams.connection")


class UpstreamChild:
    """One upstream process (or HTTP session) under supervision. `on_connected` runs after each handshake
    (the shared child lists the tools there); `on_state` hears every change of `state`."""

    def __init__(self, launch: UpstreamLaunch, label: str, log: logging.Logger, *,
                 on_tools_changed: Callable[[], None], on_restart: Callable[[], None],
                 on_state: Callable[[], None] | None = None,
                 on_connected: Callable[[UpstreamConnection], Coroutine[Any, Any, None]] | None = None,
                 http: Callable[[], httpx2.AsyncClient] | None = None) -> None:
        self.launch = launch
        self.label = label  # `testsrv`, or `testsrv for agent-7` for an agent's own child
        self._log = log
        self._on_tools_changed = on_tools_changed
        self._on_restart = on_restart
        self._on_state = on_state
        self._on_connected = on_connected
        self._http = http  # an HTTP upstream's client (shared by its children), made once the SDK is imported
        self.state: ChildState = "idle"
        self.problem = ""  # why the last start failed or the last session ended
        self.failed_starts = 0
        self.connection: UpstreamConnection | None = None
        self.in_flight = 0
        self.last_used = time.monotonic()
        self._slots = asyncio.Semaphore(launch.settings.max_concurrency)
        self._outcome: asyncio.Future[UpstreamConnection] | None = None  # the next start's, for calls waiting
        self._starting: UpstreamConnection | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected_tasks: set[asyncio.Task[None]] = set()

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Starts supervising in the background (again: nothing)."""
        if self._task is None and not self._stopping.is_set():
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-supervise-{self.launch.service}")

    async def stop(self) -> None:
        """Ends the session (its child gone) and the supervision."""
        self._stopping.set()
        self._set_state("stopped")
        if self._starting is not None:
            self._starting.lose("stopped while starting")
        if self._task is not None:
            await asyncio.shield(self._task)
        for task in list(self._connected_tasks):
            task.cancel()
        self._settle(StartFailed("stopped"))

    @contextlib.asynccontextmanager
    async def in_use(self) -> AsyncIterator[None]:
        """A call's hold on the child: a concurrency slot, and no idle stop while it runs."""
        self.in_flight += 1
        try:
            async with self._slots:
                yield
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    async def session(self) -> UpstreamConnection:
        """The live session, waiting for a start under way (or the next one); ServiceUnavailable when the child
        is down, or when the start waited for fails."""
        self.start()
        connection = self.connection
        if self.state == "up" and connection is not None and connection.usable:
            return connection
        if self.state == "down":
            raise ServiceUnavailable(f"{self.label} is down: {self.problem}",
                                     {"service": self.launch.service, "status": "down"})
        if self.state == "stopped":
            raise ServiceUnavailable(f"{self.label} is stopping", {"service": self.launch.service})
        if self._outcome is None:
            self._outcome = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.shield(self._outcome)
        except StartFailed as failed:
            raise ServiceUnavailable(f"{self.label} could not be started: {failed}",
                                     {"service": self.launch.service, "status": self.state}) from None

    def lost(self, connection: UpstreamConnection, reason: str) -> None:
        """A call or a ping found the session gone: it is ended, and supervision starts another."""
        connection.lose(reason)

    def _set_state(self, state: ChildState) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state()

    def _settle(self, outcome: UpstreamConnection | StartFailed) -> None:
        future, self._outcome = self._outcome, None
        if future is None or future.done():
            return
        if isinstance(outcome, StartFailed):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def _supervise(self) -> None:
        try:
            await _connection_module()
        except ImportError as exc:  # a broken install: no start can succeed; say so rather than wait forever
            self.problem = f"the MCP SDK could not be loaded ({exc})"
            self._log.error("%s cannot start: %s", self.label, self.problem)
            self._set_state("down")
            self._settle(StartFailed(self.problem))
            return
        from gateway_core.mcp_upstreams.connection import UpstreamConnection

        attempt = 0
        starts = 0
        while not self._stopping.is_set():
            if starts:
                self._on_restart()
            starts += 1
            if self.state != "down":  # down stays down (no flapping health) until a start succeeds
                self._set_state("starting")
            connection = self._starting = UpstreamConnection(self.launch, self._log, self._on_tools_changed,
                                                             self._http() if self._http is not None else None)
            try:
                await connection.open(self.launch.settings.startup_timeout_seconds)
            except StartFailed as failed:
                self._starting = None
                self.failed_starts += 1
                self.problem = str(failed)
                self._log.warning("%s could not be started (%d in a row): %s", self.label, self.failed_starts,
                                  failed)
                self._settle(failed)
                if self._stopping.is_set():
                    break
                self._set_state("down" if self.failed_starts >= DOWN_AFTER_FAILED_STARTS else "retrying")
            else:
                self._starting = None
                up_since = time.monotonic()
                self.failed_starts = 0
                self.problem = ""
                self.connection = connection
                self._log.info("%s is up (MCP %s)", self.label, connection.protocol_version)
                self._set_state("up")
                self._settle(connection)
                if self._on_connected is not None:
                    task = asyncio.create_task(self._on_connected(connection))
                    self._connected_tasks.add(task)
                    task.add_done_callback(self._connected_tasks.discard)
                await self._until(connection.ended.wait())
                self.connection = None
                await connection.close()  # after the stop, or a session that ended: the child is gone
                if self._stopping.is_set():
                    break
                self.problem = connection.end_reason or "the session ended"
                self._log.warning("%s: %s; starting it again", self.label, self.problem)
                if time.monotonic() - up_since >= STEADY_SECONDS:
                    attempt = 0
                self._set_state("retrying")
            await self._until(asyncio.sleep(backoff_seconds(attempt)))
            attempt += 1

    async def _until(self, awaitable: Awaitable[object]) -> None:
        """Waits for `awaitable`, or for stop() (whichever comes first)."""
        waiting = asyncio.ensure_future(awaitable)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (waiting, stopping):
                future.cancel()
