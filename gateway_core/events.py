"""The gateway's event stream for UIs: finished calls, health checks, permission events and link changes,
fanned out to subscribers.

A subscriber has a bounded queue; when it falls behind, its oldest events are dropped and counted,
so a slow console never slows the gateway. A listener (the operator feed) is called as each event is
published, in the same step as the change it reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

from gateway_core.health import HealthReport
from gateway_core.orchestrator.client import LinkState
from gateway_core.orchestrator.models import PermissionRequestEvent, PermissionResponseEvent, PermissionRevokedEvent
from gateway_core.store import CallRecord
from gateway_core.upstream_tool import UpstreamTool


@dataclass(frozen=True, slots=True)
class CallFinished:
    record: CallRecord


@dataclass(frozen=True, slots=True)
class HealthChecked:
    """Every check of a service (its latency goes into the history), whether or not its status changed."""

    service: str
    previous: HealthReport | None
    current: HealthReport

    @property
    def status_changed(self) -> bool:
        return self.previous is None or self.previous.status != self.current.status


@dataclass(frozen=True, slots=True)
class PermissionEvent:
    """A permission request, decision or revoke seen on the orchestrator's feed."""

    event: PermissionRequestEvent | PermissionResponseEvent | PermissionRevokedEvent


@dataclass(frozen=True, slots=True)
class ToolsListed:
    """An MCP upstream listed tools other than before (added, gone, or changed): what it serves now."""

    service: str
    tools: tuple[UpstreamTool, ...]


@dataclass(frozen=True, slots=True)
class LinkChanged:
    state: LinkState


@dataclass(frozen=True, slots=True)
class OperatorsChanged:
    """A console attached or left: the operators attached now, by name (one entry per console)."""

    attached: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AttachmentChanged:
    """A console attached to a gateway elsewhere: the state of its stream (connected, reconnecting, failed)."""

    state: LinkState


@dataclass(frozen=True, slots=True)
class Resynced:
    """A console attached to a gateway elsewhere was away longer than the gateway remembers (or the gateway
    restarted): its view was reloaded whole, and `pending` is what waits for a decision now. The calls it
    missed were published before this; decisions it missed are not replayed."""

    pending: tuple[PermissionRequestEvent, ...]


GatewayEvent = (CallFinished | HealthChecked | PermissionEvent | ToolsListed | LinkChanged | OperatorsChanged
                | AttachmentChanged | Resynced)
Listener = Callable[[GatewayEvent], None]


def backlog(calls: Iterable[CallRecord], pending: Iterable[PermissionRequestEvent]) -> list[GatewayEvent]:
    """What a new subscriber is given first: the recent calls (oldest first), then the pending requests."""
    return [*(CallFinished(record) for record in calls), *(PermissionEvent(request) for request in pending)]


class Subscription:
    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[GatewayEvent] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: GatewayEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> GatewayEvent:
        return await self._queue.get()

    def get_nowait(self) -> GatewayEvent | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __aiter__(self) -> AsyncIterator[GatewayEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[GatewayEvent]:
        while True:
            yield await self._queue.get()


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscription] = []
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> None:
        """Calls `listener` with every event as it is published (it must not block, and must not raise)."""
        self._listeners.append(listener)

    def subscribe(self, maxsize: int = 10_000, backlog: Iterable[GatewayEvent] = ()) -> Subscription:
        """A new subscription, given `backlog` first (what happened before, as the subscriber should see it)."""
        subscription = Subscription(self, maxsize)
        for event in backlog:
            subscription._offer(event)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, event: GatewayEvent) -> None:
        for listener in self._listeners:
            listener(event)
        for subscription in self._subscribers:
            subscription._offer(event)
