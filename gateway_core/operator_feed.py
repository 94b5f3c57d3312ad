"""The operator feed: every event the gateway publishes, numbered, for consoles attached over the network.

It listens on the gateway's event bus, so an event is numbered in the same step as the change it reports:
a snapshot taken between two events is the state as of the last number, and a console that resumes
from that number neither misses nor repeats anything. The last `capacity` events are kept (serialized
once, however many consoles read them); a console that was away longer is told to take a new snapshot.
Readers keep their own position in that ring, so a slow one costs no memory and never slows the gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

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
    ToolsListed,
)
from gateway_core.operator_models import (
    CallEvent,
    HealthEvent,
    LinkEvent,
    OperatorEvent,
    OperatorsEvent,
    PermissionFeedEvent,
    ToolsEvent,
    ToolSnapshot,
)
from gateway_core.orchestrator.models import OrchestratorCapabilities
from gateway_core.store import CallRecord

RING_CAPACITY = 20_000  # at 200 calls/s, a console away for 100 s still resumes without a new snapshot
RECENT_CALLS = 200  # what a snapshot carries of the calls before it


@dataclass(slots=True)
class _Entry:
    seq: int
    event: GatewayEvent
    capabilities: OrchestratorCapabilities | None  # for a link event: what the orchestrator can do now
    json: str | None = field(default=None)


class Gone(Exception):
    """The asked-for events are no longer kept."""

    def __init__(self, oldest: int) -> None:
        super().__init__(f"events before {oldest} are no longer kept")
        self.oldest = oldest


class OperatorFeed:
    def __init__(self, events: EventBus, capabilities: Callable[[], OrchestratorCapabilities | None],
                 capacity: int | None = None) -> None:
        self._bus = events
        self._capabilities = capabilities
        self._ring: deque[_Entry] = deque(maxlen=capacity or RING_CAPACITY)
        self.instance = uuid.uuid4().hex  # numbers from another run of the gateway mean nothing here
        self.seq = 0  # the number of the last event (0: none yet)
        self.recent_calls: deque[CallRecord] = deque(maxlen=RECENT_CALLS)
        self._attached: Counter[str] = Counter()
        self._waiter: asyncio.Future[None] | None = None
        self.stopped = False
        events.listen(self._publish)

    @property
    def attached(self) -> tuple[str, ...]:
        """The operators whose consoles are attached (a name once per console), sorted."""
        return tuple(sorted(self._attached.elements()))

    def attach(self, operator: str) -> None:
        self._attached[operator] += 1
        self._bus.publish(OperatorsChanged(self.attached))

    def detach(self, operator: str) -> None:
        if self._attached[operator] > 0:
            self._attached[operator] -= 1
            self._bus.publish(OperatorsChanged(self.attached))

    def _publish(self, event: GatewayEvent) -> None:
        if isinstance(event, AttachmentChanged | Resynced):
            return  # an attached console's own view of its stream: never published by a gateway
        self.seq += 1
        if isinstance(event, CallFinished):
            self.recent_calls.append(event.record)
        capabilities = self._capabilities() if isinstance(event, LinkChanged) else None
        self._ring.append(_Entry(self.seq, event, capabilities))
        self._wake()

    def stop(self) -> None:
        """The gateway is stopping: every reader is woken to close its stream."""
        self.stopped = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        self._waiter = None

    def since(self, after: int, limit: int) -> list[str]:
        """Up to `limit` events numbered after `after`, serialized (Gone when some of them are no longer kept)."""
        if after >= self.seq:
            return []
        oldest = self._ring[0].seq if self._ring else self.seq + 1
        if after + 1 < oldest:
            raise Gone(oldest)
        start = after + 1 - oldest
        entries = [self._ring[index] for index in range(start, min(start + limit, len(self._ring)))]
        for entry in entries:
            if entry.json is None:
                entry.json = _wire(entry).model_dump_json()
        return [entry.json for entry in entries if entry.json is not None]

    async def wait_beyond(self, seq: int) -> None:
        """Returns once there is an event after `seq`."""
        while self.seq <= seq and not self.stopped:
            if self._waiter is None:
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)  # one reader cancelled must not cancel the others' wait


def _wire(entry: _Entry) -> OperatorEvent:
    event, seq = entry.event, entry.seq
    if isinstance(event, CallFinished):
        return CallEvent(seq=seq, record=event.record)
    if isinstance(event, HealthChecked):
        return HealthEvent(seq=seq, service=event.service, previous=event.previous, current=event.current)
    if isinstance(event, PermissionEvent):
        return PermissionFeedEvent(seq=seq, event=event.event)
    if isinstance(event, ToolsListed):
        return ToolsEvent(seq=seq, service=event.service, tools=[ToolSnapshot.of(tool) for tool in event.tools])
    if isinstance(event, LinkChanged):
        return LinkEvent(seq=seq, state=event.state, capabilities=entry.capabilities)
    if isinstance(event, OperatorsChanged):
        return OperatorsEvent(seq=seq, attached=list(event.attached))
    raise TypeError(f"no wire shape for {type(event).__name__}")
