"""An MCP upstream as a service handler: its operations are the tools it lists (a live table, kept in the
store so that calls are validated before it answers), a call goes to its shared child (or, with
`isolation = "per_agent"`, to the calling agent's own), and health is a ping."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from gateway_core.catalog import ServiceSpec
from gateway_core.clock import Clock
from gateway_core.config import Settings
from gateway_core.errors import GatewayError, InternalError, ServiceUnavailable, UpstreamTimeout
from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.caller import calling_agent
from gateway_core.health import HealthReport
from gateway_core.mcp_upstreams.child import UpstreamChild
from gateway_core.mcp_upstreams.failures import ConnectionLost
from gateway_core.mcp_upstreams.launch import UpstreamLaunch
from gateway_core.mcp_upstreams.tools import risk_changes, tools_table
from gateway_core.operations import Operation, OperationArgs, OperationTable
from gateway_core.store import AuditEvent, SQLiteStore
from gateway_core.upstream_tool import ToolArguments, UpstreamTool

if TYPE_CHECKING:
    import httpx2

    from gateway_core.mcp_upstreams.connection import UpstreamConnection

LIST_DEBOUNCE_SECONDS = 1.0  # list_changed notifications within this are one listing
IDLE_SECONDS = 600.0  # an agent's own child, unused this long, is stopped
IDLE_CHECK_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class UpstreamHooks:
    """What an upstream needs of the gateway around it."""

    store: SQLiteStore  # the tool listings kept between runs
    clock: Clock
    audit: Callable[[AuditEvent], None]
    restarted: Callable[[str], None]  # a child of this service started again (the restarts metric)
    state_changed: Callable[[str], None]  # the shared child's state changed: check its health now
    tools_changed: Callable[[str], None]  # a listing changed the service's tools (consoles are told)
    ping_timeout_seconds: float


class McpUpstreamHandler(ServiceHandler):
    """One MCP server's service. Built by the gateway from its launch (not from the settings alone)."""

    service = "mcp"  # each instance serves the service of its launch
    operations = OperationTable(())  # none declared: they are whatever the server lists

    def __init__(self, launch: UpstreamLaunch, spec: ServiceSpec, hooks: UpstreamHooks) -> None:
        self.launch = launch
        self.spec = spec
        self.hooks = hooks
        self.timeout_seconds = launch.settings.timeout_seconds
        self.log = logging.getLogger(f"gateway_core.mcp.{launch.service}")
        self._tools = OperationTable(())
        self._listing: list[dict[str, Any]] = []  # what the table was made of, as listed (and kept in the store)
        self.listed = asyncio.Event()  # set once there are tools to serve: listed now, or kept from before
        self.listed_live = False
        self._http: httpx2.AsyncClient | None = None  # an HTTP upstream's one client, made on its first start
        self._shared = self._child(launch.service, lister=True)
        self._own: dict[str, UpstreamChild] = {}  # per_agent: caller → its child
        self._relist_task: asyncio.Task[None] | None = None
        self._relist_again = False
        self._reaper: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        raise TypeError("an MCP upstream's handler is built by the gateway from its launch, not from the settings")

    def live_operations(self) -> OperationTable:
        return self._tools

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Serves the tools kept from the last listing, then starts the child in the background (`lazy`:
        on the first call)."""
        kept = (await self.hooks.store.mcp_tools()).get(self.launch.service)
        if kept is not None:
            try:
                listing = json.loads(kept[1])
                self._tools = tools_table(listing, self.launch.settings, self.log, check_schemas=False)
                self._listing = listing
                self.listed.set()
            except (ValueError, TypeError):
                self.log.warning("the kept tool listing cannot be read: waiting for a new one")
        if self.launch.settings.isolation == "per_agent":
            self._reaper = asyncio.create_task(self._stop_idle_children(), name=f"mcp-idle-{self.launch.service}")
        if self.launch.settings.start == "eager":
            self._shared.start()

    async def aclose(self) -> None:
        """Stops every child (each gone when this returns) and the HTTP client."""
        for task in (self._reaper, self._relist_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(self._shared.stop(), *(child.stop() for child in self._own.values()))
        if self._http is not None:
            await self._http.aclose()

    async def first_listing(self) -> None:
        """Returns once there are tools to serve (listed now, or kept from before), or once a start failed
        without any (`problem` says why); starts the child if it has not started (a lazy upstream). The
        caller bounds the wait (`[mcp] first_list_wait_seconds`)."""
        if not self.listed.is_set():
            try:
                await self._shared.session()
            except ServiceUnavailable:
                return
            await self.listed.wait()

    @property
    def problem(self) -> str:
        """Why the shared child's last start failed or its last session ended ("" if it did not)."""
        return self._shared.problem

    # -- calls -------------------------------------------------------------------------------------

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        if not isinstance(operation, UpstreamTool) or not isinstance(args, ToolArguments):
            raise InternalError(f"{operation.name} is not a tool of {self.launch.service}")
        child = self._child_of(calling_agent())
        for attempt in (1, 2):
            async with child.in_use():
                connection = await child.session()
                try:
                    return await connection.call_tool(operation.name, args.arguments)
                except ConnectionLost as lost:
                    child.lost(connection, str(lost))
                    reason = str(lost)
            # A read can be asked again of the new session; anything else may have happened already.
            if operation.risk != "read" or attempt == 2:
                raise ServiceUnavailable(
                    f"{self.launch.service} lost its connection during {operation.name} ({reason}): it may have "
                    "run; check before repeating it",
                    {"service": self.launch.service, "operation": operation.name, "mayHaveRun": True})
            self.log.info("%s: %s lost its connection (%s); asking again once restarted", child.label,
                          operation.name, reason)
        raise AssertionError("unreachable")

    def _child_of(self, caller: str | None) -> UpstreamChild:
        if self.launch.settings.isolation == "shared" or caller is None:
            return self._shared
        child = self._own.get(caller)
        if child is None:
            child = self._own[caller] = self._child(f"{self.launch.service} for {caller}", lister=False)
        return child

    def _child(self, label: str, lister: bool) -> UpstreamChild:
        return UpstreamChild(
            self.launch, label, self.log, on_tools_changed=self.relist_soon,
            on_restart=lambda: self.hooks.restarted(self.launch.service),
            on_state=(lambda: self.hooks.state_changed(self.launch.service)) if lister else None,
            on_connected=self._list if lister else None, http=self._http_client if self.launch.url else None)

    def _http_client(self) -> httpx2.AsyncClient:
        """The one HTTP client of every child of this upstream (called once the SDK is imported)."""
        if self._http is None:
            from gateway_core.mcp_upstreams.connection import http_client

            self._http = http_client(self.launch)
        return self._http

    async def _stop_idle_children(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK_SECONDS)
            now = time.monotonic()
            for caller, child in list(self._own.items()):
                if child.in_flight == 0 and now - child.last_used >= IDLE_SECONDS:
                    del self._own[caller]
                    self.log.info("%s: idle for %g minutes, stopped", child.label, IDLE_SECONDS / 60)
                    await child.stop()

    # -- the tool listing ----------------------------------------------------------------------------

    def relist_soon(self) -> None:
        """The server said its tools changed (or a call found one gone): list them again, once for a burst."""
        if self._relist_task is not None and not self._relist_task.done():
            self._relist_again = True
            return
        self._relist_task = asyncio.create_task(self._relist(), name=f"mcp-relist-{self.launch.service}")

    async def _relist(self) -> None:
        while True:
            self._relist_again = False
            await asyncio.sleep(LIST_DEBOUNCE_SECONDS)
            connection = self._shared.connection
            if connection is not None:
                await self._list(connection)
            if not self._relist_again:
                return

    async def _list(self, connection: UpstreamConnection) -> None:
        """Takes a new listing. It runs in a task of its own (on connecting, after list_changed) that nobody
        awaits: a failure nobody foresaw (the store refusing the listing, say) is logged here or never seen."""
        try:
            await self._take_listing(connection)
        except Exception:
            self.log.exception("taking the new tool listing failed")

    async def _take_listing(self, connection: UpstreamConnection) -> None:
        """Lists the tools; the new table serves at once, risks it changed are logged and audited, and the
        listing is kept in the store. A listing that fails leaves the table as it was."""
        try:
            listing = await connection.list_tools()
        except (GatewayError, ConnectionLost) as exc:
            self.log.warning("listing the tools failed: %s", getattr(exc, "message", exc))
            return
        table = tools_table(listing, self.launch.settings, self.log)
        for change in risk_changes(self._tools, table):
            self.log.warning("tool %s is now %s (was %s): its new listing says so", change.tool, change.after,
                             change.before)
            self.hooks.audit(AuditEvent(self.hooks.clock(), f"mcp:{self.launch.service}", "mcp.tool_risk_changed",
                                        f"{self.launch.service}.{change.tool}",
                                        {"service": self.launch.service, "tool": change.tool,
                                         "before": change.before, "after": change.after}))
        added = [name for name in table if name not in self._tools]
        if added and self.listed_live:
            self.log.info("new tools: %s", ", ".join(added))
        kept = [entry for entry in listing if isinstance(entry, dict) and entry.get("name") in table]
        changed, self._listing, self._tools = kept != self._listing, kept, table
        self.listed_live = True
        self.listed.set()
        if changed:
            self.hooks.tools_changed(self.launch.service)
        await self.hooks.store.save_mcp_tools(self.launch.service, json.dumps(kept))

    # -- health --------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        """healthy: a ping answered (its time is the latency); degraded: starting, or restarting with the last
        listing's tools; down: 3 starts in a row failed. A ping that fails ends the session (restarted)."""
        child = self._shared
        if child.state == "idle":
            return HealthReport("unknown", None, "starts on its first call" if not child.started else "starting")
        if child.state == "down":
            return HealthReport("down", None, child.problem)
        if child.state == "stopped":
            return HealthReport("down", None, "stopped")
        connection = child.connection
        if child.state != "up" or connection is None:
            why = f"restarting after: {child.problem}" if child.problem else "starting"
            return HealthReport("degraded", None, why + (" (serving its last tool listing)" if self._tools else ""))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.hooks.ping_timeout_seconds * 0.8):
                await connection.ping()
        except (TimeoutError, GatewayError, ConnectionLost) as exc:
            reason = "no answer to a ping" if isinstance(exc, TimeoutError | UpstreamTimeout) else \
                f"a ping failed: {getattr(exc, 'message', exc)}"
            child.lost(connection, reason)
            return HealthReport("degraded", None, f"{reason}; restarting")
        return HealthReport("healthy", (time.perf_counter() - started) * 1000)
