"""A console attached to a gateway elsewhere: `RemoteGateway` is the console's gateway interface
(operator_api.GatewayView) over the gateway's operator API.

It takes a snapshot, then follows the event stream from the snapshot's number, keeping its own copy of
what the screens read (services, health, usage, the recent calls, what is pending) and handing every event
on to the console as the gateway in the console's own process would. When the stream drops it resumes from
the last number it had, so nothing is missed or seen twice; when the gateway no longer remembers that far
back (or restarted), it takes a new snapshot and says so (Resynced)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import websockets
from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import connect

from gateway_core import __version__
from gateway_core.clock import Clock, system_clock
from gateway_core.errors import PermissionDenied, ServiceUnavailable, error_for
from gateway_core.events import (
    AttachmentChanged,
    CallFinished,
    EventBus,
    GatewayEvent,
    HealthChecked,
    LinkChanged,
    OperatorsChanged,
    PermissionEvent,
    Resynced,
    Subscription,
    ToolsListed,
    backlog,
)
from gateway_core.gateway import ExecuteOutcome, OperatorCaller
from gateway_core.handlers import HANDLER_CLASSES
from gateway_core.health import HISTORY_LENGTH, HealthReport, HealthStatus
from gateway_core.operations import OperationTable
from gateway_core.operator_api import ServiceView
from gateway_core.operator_feed import RECENT_CALLS
from gateway_core.operator_models import (
    AGENTS_PATH,
    AUDIT_PATH,
    CLOSE_UNAUTHENTICATED,
    DECIDE_PATH,
    EVENTS_PATH,
    GRANTS_PATH,
    HISTORY_PATH,
    REVOKE_PATH,
    RUN_PATH,
    SNAPSHOT_PATH,
    STREAM_MESSAGE,
    AgentNames,
    AuditPage,
    CallEvent,
    EventBatch,
    GrantPage,
    HealthEvent,
    HistoryPage,
    LinkEvent,
    OperatorEvent,
    OperatorProblem,
    OperatorsEvent,
    OperatorSnapshot,
    PermissionFeedEvent,
    RevokeBody,
    RunAnswer,
    RunBody,
    ServiceSnapshot,
    ToolsEvent,
)
from gateway_core.orchestrator.client import (
    DecisionConflict,
    LinkState,
    OrchestratorUnavailable,
    RouteMissing,
    UnknownGrant,
    UnknownRequest,
    describe_stream_failure,
)
from gateway_core.orchestrator.models import (
    Decided,
    DecidedRequest,
    GrantView,
    OrchestratorCapabilities,
    PermissionRequestEvent,
    PermissionRespondBody,
    PermissionResponseEvent,
)
from gateway_core.permission_gate import DecisionNotSupported
from gateway_core.redaction import shown_url
from gateway_core.store import AuditEvent, CallRecord, UsageTotals
from gateway_core.usage import DailyUsage, Usage

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8100"
MAX_BACKOFF_SECONDS = 5.0  # an operator on call wants the console back soon after the gateway is
M = TypeVar("M", bound=BaseModel)


class GatewayUnreachable(ServiceUnavailable):
    """The gateway an attached console works through cannot be reached (or answered nonsense)."""


class OperatorRefused(GatewayUnreachable):
    """The gateway refused the operator token: attaching again with it will not help."""


@dataclass(slots=True)
class _ServiceCopy:
    """One service as the console's copy keeps it, changed by health events (usage is kept in `Usage`)."""

    name: str
    description: str
    location: str
    status: HealthStatus
    health: HealthReport | None
    latency_history: deque[float | None]
    missing_settings: tuple[str, ...]
    operations: OperationTable = field(default_factory=lambda: OperationTable(()))


class RemoteGateway:
    """GatewayView over a gateway's operator API. `connect()` before anything else; `aclose()` at the end."""

    def __init__(self, url: str, token: str, *, read_only: bool = False, clock: Clock = system_clock,
                 timeout_seconds: float = 10.0) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"cannot attach to {url!r}: give the gateway's URL, such as {DEFAULT_URL}")
        self.attached_to = shown_url(self.url).split("://", 1)[1]
        self._read_only = read_only
        self._clock = clock
        self._headers = {"User-Agent": f"mcp-console/{__version__}", "Authorization": f"Bearer {token}"}
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=timeout_seconds)
        self._bus = EventBus()
        self._operator = OperatorCaller("?", read_only)
        self._address: str | None = None
        self._instance = ""
        self._seq = 0
        self._services: dict[str, _ServiceCopy] = {}
        self._usage = Usage((), clock)
        self._agents_served = 0
        self._calls: deque[CallRecord] = deque(maxlen=RECENT_CALLS)
        self._pending: OrderedDict[str, PermissionRequestEvent] = OrderedDict()
        self._link: LinkState | None = None
        self._capabilities: OrchestratorCapabilities | None = None
        self._operators: tuple[str, ...] = ()
        self.attachment = LinkState("connecting")
        self.version: str | None = None  # the gateway's
        self.resyncs = 0  # snapshots taken after the first (the stream could not resume)
        self._following: asyncio.Task[None] | None = None

    # -- attaching -------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Takes the first snapshot and starts following the stream. GatewayUnreachable (OperatorRefused for a
        token the gateway does not take) when it cannot."""
        self._apply_snapshot(await self._snapshot())
        self._following = asyncio.create_task(self._follow(), name="operator-stream")

    async def aclose(self) -> None:
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
        await self._http.aclose()

    async def _snapshot(self) -> OperatorSnapshot:
        return await self._get(SNAPSHOT_PATH, OperatorSnapshot)

    def _apply_snapshot(self, snapshot: OperatorSnapshot) -> list[CallRecord]:
        """Replaces the copy with the snapshot's state; returns the snapshot's calls this copy had not seen."""
        seen = {record.id for record in self._calls}
        self._instance, self._seq = snapshot.instance, snapshot.seq
        self.version = snapshot.version
        self._operator = OperatorCaller(snapshot.operator, self._read_only)
        self._address = snapshot.address
        self._services = {}
        for service in snapshot.services:
            self._services[service.name] = _ServiceCopy(
                service.name, service.description, service.location, service.status, service.health,
                deque(service.latency_history, maxlen=HISTORY_LENGTH), tuple(service.missing_settings),
                _operations_of(service))
        self._usage = Usage(self._services, self._clock)
        self._usage.today = DailyUsage(snapshot.today.starts, snapshot.today.ends, snapshot.today.total,
                                       snapshot.today.by_caller)
        self._usage.by_service = {service.name: service.used for service in snapshot.services}
        self._agents_served = snapshot.agents_served
        self._calls = deque(snapshot.recent_calls, maxlen=RECENT_CALLS)
        self._pending = OrderedDict((request.request_id, request) for request in snapshot.pending)
        self._link, self._capabilities = snapshot.link, snapshot.capabilities
        self._operators = tuple(snapshot.operators)
        return [record for record in snapshot.recent_calls if record.id not in seen]

    async def _follow(self) -> None:
        """The stream, resumed from the last event seen whenever it drops; a new snapshot when it cannot be."""
        attempt = 0
        while True:
            ws_url = "ws" + self.url[len("http"):] + f"{EVENTS_PATH}?after={self._seq}&instance={self._instance}"
            try:
                async with connect(ws_url, additional_headers=self._headers, open_timeout=5, ping_interval=20,
                                   ping_timeout=20, max_size=1 << 24) as socket:
                    attempt = 0
                    self._attachment(LinkState("connected"))
                    async for frame in socket:
                        message = STREAM_MESSAGE.validate_json(frame)
                        if isinstance(message, EventBatch):
                            for event in message.events:
                                self._apply(event)
                            continue
                        await self._resync()  # a Resync: the stream closes after it
                reason = _close_reason(socket.close_code, socket.close_reason)
            except websockets.exceptions.ConnectionClosed as closed:
                reason = _close_reason(closed.rcvd.code if closed.rcvd else None,
                                       closed.rcvd.reason if closed.rcvd else "")
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException, GatewayUnreachable,
                    ValidationError) as exc:
                if isinstance(exc, OperatorRefused):
                    self._attachment(LinkState("failed", reason=str(exc)))
                    return
                reason = _describe(exc)
            if reason == "resync":
                continue  # resumed from the new snapshot at once
            if reason.startswith("refused:"):
                self._attachment(LinkState("failed", reason=reason.removeprefix("refused:").strip()))
                return
            attempt += 1
            delay = min(MAX_BACKOFF_SECONDS, 0.1 * 2 ** min(attempt - 1, 10)) * random.uniform(0.5, 1.0)
            self._attachment(LinkState("reconnecting", round(delay, 1), reason))
            await asyncio.sleep(delay)

    async def _resync(self) -> None:
        missed = self._apply_snapshot(await self._snapshot())
        self.resyncs += 1
        for record in missed:
            self._bus.publish(CallFinished(record))
        self._bus.publish(Resynced(tuple(self._pending.values())))

    def _attachment(self, state: LinkState) -> None:
        self.attachment = state
        self._bus.publish(AttachmentChanged(state))

    def _apply(self, event: OperatorEvent) -> None:
        """One event into the copy, then on to the console, as the gateway would have published it."""
        if event.seq <= self._seq:  # already applied: a repeat would only come from a bug; it must not show twice
            log.warning("the gateway's event %d came again after %d: not applied twice", event.seq, self._seq)
            return
        self._seq = event.seq
        published: GatewayEvent
        if isinstance(event, CallEvent):
            self._calls.append(event.record)
            self._usage.add(event.record)
            published = CallFinished(event.record)
        elif isinstance(event, HealthEvent):
            copy = self._services.get(event.service)
            if copy is not None:
                copy.health, copy.status = event.current, event.current.status
                copy.latency_history.append(event.current.latency_ms)
            published = HealthChecked(event.service, event.previous, event.current)
        elif isinstance(event, PermissionFeedEvent):
            if isinstance(event.event, PermissionRequestEvent):
                self._pending[event.event.request_id] = event.event
            elif isinstance(event.event, PermissionResponseEvent):
                self._pending.pop(event.event.request_id, None)
            published = PermissionEvent(event.event)
        elif isinstance(event, ToolsEvent):
            tools = tuple(tool.operation() for tool in event.tools)
            copy = self._services.get(event.service)
            if copy is not None:
                copy.operations = OperationTable(tools)
            published = ToolsListed(event.service, tools)
        elif isinstance(event, LinkEvent):
            self._link = event.state
            self._capabilities = event.capabilities or self._capabilities
            published = LinkChanged(event.state)
        else:
            assert isinstance(event, OperatorsEvent)
            self._operators = tuple(event.attached)
            published = OperatorsChanged(self._operators)
        self._bus.publish(published)

    # -- what the console reads ----------------------------------------------------------------------------

    @property
    def operator(self) -> OperatorCaller:
        return self._operator

    @property
    def address(self) -> str | None:
        return self._address

    @property
    def link(self) -> LinkState | None:
        return self._link

    @property
    def capabilities(self) -> OrchestratorCapabilities | None:
        return self._capabilities

    def services(self) -> list[ServiceView]:
        return [ServiceView(copy.name, copy.description, copy.location, copy.status, copy.health,
                            tuple(copy.latency_history), self._usage.by_service.get(copy.name) or UsageTotals(),
                            copy.operations, copy.missing_settings)
                for copy in self._services.values()]

    def today(self) -> DailyUsage:
        return self._usage.today

    def agents_served(self) -> int:
        return self._agents_served

    def operators_attached(self) -> tuple[str, ...]:
        return self._operators

    def subscribe(self) -> Subscription:
        return self._bus.subscribe(backlog=backlog(self._calls, self._pending.values()))

    # -- queries and actions ----------------------------------------------------------------------------

    async def agent_names(self) -> dict[str, str]:
        answer = await self._get(AGENTS_PATH, AgentNames)
        self._agents_served = answer.served
        return answer.names

    async def audit(self, limit: int) -> list[AuditEvent]:
        return (await self._get(AUDIT_PATH, AuditPage, {"limit": limit})).events

    async def grants(self) -> list[GrantView]:
        return (await self._get(GRANTS_PATH, GrantPage)).grants

    async def history(self, limit: int) -> list[DecidedRequest]:
        return (await self._get(HISTORY_PATH, HistoryPage, {"limit": limit})).decisions

    async def run(self, service: str, operation: str, arguments: dict[str, Any]) -> ExecuteOutcome:
        body = RunBody(service=service, operation=operation, arguments=arguments, read_only=self._read_only)
        answer = await self._post(RUN_PATH, body, RunAnswer)
        assert answer is not None
        error = answer.error
        return ExecuteOutcome(answer.record, answer.result,
                              error_for(error.code, error.message, error.data) if error is not None else None)

    async def decide(self, body: PermissionRespondBody) -> Decided:
        self._refuse_if_read_only("decide permission requests")
        decided = await self._post(DECIDE_PATH, body.model_copy(update={"decided_by": None}), Decided)
        assert decided is not None
        return decided

    async def revoke(self, grant_id: str) -> None:
        self._refuse_if_read_only("revoke grants")
        await self._post(REVOKE_PATH, RevokeBody(grant_id=grant_id), None)

    def _refuse_if_read_only(self, what: str) -> None:
        if self._read_only:
            raise PermissionDenied(f"This console is read-only: it cannot {what}", {"status": "read_only"})

    # -- HTTP -------------------------------------------------------------------------------------------

    async def _get(self, path: str, model: type[M], params: dict[str, Any] | None = None) -> M:
        answer = self._checked(await self._request("GET", path, params=params), model)
        assert answer is not None
        return answer

    async def _post(self, path: str, body: BaseModel, model: type[M] | None) -> M | None:
        return self._checked(await self._request("POST", path, content=body.model_dump_json(exclude_none=True)),
                             model)

    async def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, headers={"content-type": "application/json"}, **options)
        except httpx.TimeoutException:
            raise GatewayUnreachable(f"the gateway at {self.attached_to} did not answer in time") from None
        except httpx.TransportError as exc:
            raise GatewayUnreachable(f"cannot reach the gateway at {self.attached_to}: {_transport(exc)}") from None

    def _checked(self, response: httpx.Response, model: type[M] | None) -> M | None:
        if response.status_code < 300:
            if model is None:
                return None
            try:
                return model.model_validate_json(response.content)
            except ValidationError:
                raise GatewayUnreachable(f"the gateway at {self.attached_to} answered {response.request.url.path} "
                                         f"with something this console cannot read (version {__version__}; "
                                         f"the gateway's: {self.version})") from None
        try:
            problem = OperatorProblem.model_validate_json(response.content)
        except ValidationError:
            raise GatewayUnreachable(f"the gateway at {self.attached_to} answered {response.status_code} on "
                                     f"{response.request.url.path}: is it an mcp-console gateway as recent as "
                                     f"this console ({__version__})?") from None
        message = problem.message
        if problem.error == "unauthenticated":
            raise OperatorRefused(f"the gateway at {self.attached_to} refused the operator token: {message}")
        if problem.error == "conflict":
            raise DecisionConflict(problem.first or {"detail": message})
        if problem.error == "unknown_request":
            raise UnknownRequest(message.rsplit(" ", 1)[-1])
        if problem.error == "unknown_grant":
            raise UnknownGrant(message.split()[2])
        if problem.error == "not_supported":
            raise DecisionNotSupported(message)
        if problem.error == "route_missing":
            raise RouteMissing(message)
        if problem.error == "orchestrator_unavailable":
            raise OrchestratorUnavailable(message)
        raise GatewayUnreachable(f"the gateway at {self.attached_to} refused {response.request.url.path}: {message}")


def _operations_of(service: ServiceSnapshot) -> OperationTable:
    """A service's operations here: an MCP upstream's as the gateway listed them, a native one's from this build's
    own declaration (the same code as the gateway's, so nothing about them needs to travel)."""
    if service.tools:
        return OperationTable(tool.operation() for tool in service.tools)
    handler = HANDLER_CLASSES.get(service.name)
    return handler.operations if handler is not None else OperationTable(())


def _close_reason(code: int | None, reason: str | None) -> str:
    if code == CLOSE_UNAUTHENTICATED:
        return f"refused: {reason or 'the operator token is no longer valid'}"
    if reason == "resync":
        return "resync"
    return reason or ("the gateway closed the stream" if code in (1000, 1001, None) else f"closed ({code})")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GatewayUnreachable):
        return exc.message
    if isinstance(exc, ValidationError):
        return "the stream sent something this console cannot read"
    return describe_stream_failure(exc, "the gateway refused the stream")


def _transport(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else "cannot connect"
    return type(exc).__name__

