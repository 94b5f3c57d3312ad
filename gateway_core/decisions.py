"""Held calls waiting for an operator: one future per permission request, resolved by the feed's decision.
A thousand held calls are a thousand suspended coroutines: no thread and no polling each."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TypeVar

from gateway_core.orchestrator.models import PermissionResponseEvent

RECENT = 10_000
Remembered = TypeVar("Remembered")


def remember(memory: OrderedDict[str, Remembered], key: str, value: Remembered) -> None:
    """Keeps `value` under `key`, forgetting the oldest entry past RECENT."""
    memory[key] = value
    if len(memory) > RECENT:
        memory.popitem(last=False)


class Recheck:
    """Not a decision: the feed was away and is back, so a decision may have been missed; look again."""


RECHECK = Recheck()


class Stopping:
    """Not a decision: the gateway is stopping, so a held call is answered now instead of waiting on."""


STOPPING = Stopping()
Outcome = PermissionResponseEvent | Recheck | Stopping


class DecisionBoard:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[Outcome]] = {}
        # Request ids waited on per agent and service: a decision on another request for the same subject
        # wakes them too (the external orchestrator may file two ids for one need; one approval covers both).
        self._by_subject: dict[tuple[str, str], set[str]] = {}
        # Decided before anyone waited, each with its number in the order decisions were heard.
        self._recent: OrderedDict[str, tuple[int, PermissionResponseEvent]] = OrderedDict()
        self.heard = 0  # decisions heard so far
        self.stopping = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def publish(self, decision: PermissionResponseEvent) -> None:
        self.heard += 1
        remember(self._recent, decision.request_id, (self.heard, decision))
        woken = {decision.request_id}
        if decision.agent_id and decision.service_name:
            woken |= self._by_subject.pop((decision.agent_id, decision.service_name), set())
        for request_id in woken:
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(decision)

    def recheck_all(self) -> None:
        """Wakes every held call to look at its grants again (after the feed reconnected)."""
        waiting, self._waiting = self._waiting, {}
        self._by_subject.clear()
        for future in waiting.values():
            if not future.done():
                future.set_result(RECHECK)

    def stop_all(self) -> None:
        """Answers every held call with STOPPING, now and from now on (the gateway is stopping)."""
        self.stopping = True
        waiting, self._waiting = self._waiting, {}
        self._by_subject.clear()
        for future in waiting.values():
            if not future.done():
                future.set_result(STOPPING)

    async def wait(self, request_id: str, subject: tuple[str, str], seconds: float,
                   heard_before: int = 0) -> Outcome | None:
        """The decision on `request_id` (or on another request for the same agent and service), RECHECK,
        STOPPING, or None if nothing came within `seconds`. `heard_before`: the decisions heard when the request
        was filed; one of those was on an earlier request under the same id (the external orchestrator names
        requests by the second), not on this one."""
        if self.stopping:
            return STOPPING
        decided = self._recent.get(request_id)
        if decided is not None and decided[0] > heard_before:
            return decided[1]
        future = self._waiting.get(request_id)
        if future is None:
            future = self._waiting[request_id] = asyncio.get_running_loop().create_future()
        self._by_subject.setdefault(subject, set()).add(request_id)
        try:
            return await asyncio.wait_for(asyncio.shield(future), seconds)
        except TimeoutError:
            return None
