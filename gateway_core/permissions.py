"""The permission policy: may this agent use this service's operation? Fails closed."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from gateway_core.operations import Operation
from gateway_core.periodic import Periodic
from gateway_core.store import Grant, SQLiteStore


class PermissionPolicy(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def invalidate(self) -> None:
        """Re-reads grants at once (a decision or revoke arrived)."""

    async def is_allowed(self, agent_id: str, service: str, operation: Operation) -> bool: ...


class StoreGrantPolicy:
    """Answers from a snapshot of the store's active grants, re-read every `refresh_seconds`
    (so a grant made by the CLI or an orchestrator takes effect within that) or on `invalidate()`.
    Until the first snapshot is read, nothing is allowed."""

    def __init__(self, store: SQLiteStore, refresh_seconds: float, clock: Callable[[], float] = time.time):
        self._store = store
        self._clock = clock
        self._grants: dict[tuple[str, str], list[Grant]] | None = None
        self._refresher = Periodic(refresh_seconds, self.refresh, "grant-refresh")

    async def start(self) -> None:
        await self.refresh()
        self._refresher.start()

    async def aclose(self) -> None:
        await self._refresher.stop()

    def invalidate(self) -> None:
        self._refresher.run_soon()

    async def refresh(self) -> None:
        grants: dict[tuple[str, str], list[Grant]] = defaultdict(list)
        for grant in await self._store.list_grants(active_only=True):
            if grant.args_hash is None:  # one-time approvals are consumed per call, not cached
                grants[(grant.agent_id, grant.service)].append(grant)
        self._grants = dict(grants)

    async def is_allowed(self, agent_id: str, service: str, operation: Operation) -> bool:
        if self._grants is None:
            return False
        now = self._clock()
        return any(grant.active_at(now) and grant.covers(operation.name)
                   for grant in self._grants.get((agent_id, service), ()))
