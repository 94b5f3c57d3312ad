"""The gateway's event stream for UIs: finished calls and health changes, fanned out to subscribers.

A subscriber has a bounded queue; when it falls behind, its oldest events are dropped and counted,
so a slow console never slows the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway_core.health import HealthReport
from gateway_core.orchestrator.client import LinkState
from gateway_core.orchestrator.models import PermissionRequestEvent, PermissionResponseEvent, PermissionRevokedEvent
from gateway_core.store import CallRecord


@dataclass(frozen=True, slots=True)
class CallFinished:
    record: CallRecord


@dataclass(frozen=True, slots=True)
class HealthChanged:
    service: str
    previous: HealthReport | None
    current: HealthReport


@dataclass(frozen=True, slots=True)
class PermissionEvent:
    """A permission request, decision or revoke seen on the orchestrator's feed."""

    event: PermissionRequestEvent | PermissionResponseEvent | PermissionRevokedEvent


@dataclass(frozen=True, slots=True)
class LinkChanged:
    state: LinkState


GatewayEvent = CallFinished | HealthChanged | PermissionEvent | LinkChanged


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

    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        subscription = Subscription(self, maxsize)
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, event: GatewayEvent) -> None:
        for subscription in self._subscribers:
            subscription._offer(event)
