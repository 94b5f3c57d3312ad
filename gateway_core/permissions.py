"""The permission policy: may this agent use this service's operation? Fails closed."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Collection
from typing import Protocol

from gateway_core.clock import Clock, system_clock
from gateway_core.operations import Operation
from gateway_core.orchestrator.client import OrchestratorClient, OrchestratorUnavailable
from gateway_core.orchestrator.models import AgentPermissions, GrantView
from gateway_core.periodic import Periodic
from gateway_core.store import Grant, SQLiteStore


class PermissionPolicy(Protocol):
    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def invalidate(self, agent_id: str | None = None) -> None:
        """Forgets what it knows of an agent's grants (or everyone's): a decision or revoke arrived."""

    def configure(self, cache_seconds: float, always_ask: Collection[str]) -> None:
        """New settings (a reloaded config file), from the next call on."""

    async def is_allowed(self, agent_id: str, service: str, operation: Operation, args_hash: str = "") -> bool:
        """May the agent make this call? `args_hash` identifies the call's arguments, for one-time approvals."""


class StoreGrantPolicy:
    """Answers from a snapshot of the store's active grants, re-read every `refresh_seconds`
    (so a grant made by the CLI or an orchestrator takes effect within that) or on `invalidate()`.
    Until the first snapshot is read, nothing is allowed."""

    def __init__(self, store: SQLiteStore, refresh_seconds: float):
        self._store = store
        self._clock = store.clock
        self._grants: dict[tuple[str, str], list[Grant]] | None = None
        self._refresher = Periodic(refresh_seconds, self.refresh, "grant-refresh")

    async def start(self) -> None:
        await self.refresh()
        self._refresher.start()

    async def aclose(self) -> None:
        await self._refresher.stop()

    def invalidate(self, agent_id: str | None = None) -> None:
        self._refresher.run_soon()

    def configure(self, cache_seconds: float, always_ask: Collection[str]) -> None:
        self._refresher.interval = cache_seconds  # always_ask needs an orchestrator: the gate refuses those calls

    async def refresh(self) -> None:
        grants: dict[tuple[str, str], list[Grant]] = defaultdict(list)
        for grant in await self._store.list_grants(active_only=True):
            if grant.args_hash is None:  # one-time approvals are consumed per call, not cached
                grants[(grant.agent_id, grant.service)].append(grant)
        self._grants = dict(grants)

    async def is_allowed(self, agent_id: str, service: str, operation: Operation, args_hash: str = "") -> bool:
        if self._grants is None:
            return False
        now = self._clock()
        return any(grant.active_at(now) and grant.covers(operation.name)
                   for grant in self._grants.get((agent_id, service), ()))


class OrchestratorPolicy:
    """Grants as the orchestrator reports them: `allowed_mcps` (whole services), and, from ours, per-operation
    and one-time grants with their expiry. Cached per agent for `cache_seconds`; a decision or revoke on
    the feed invalidates at once. An orchestrator that cannot be asked raises OrchestratorUnavailable, one that
    does not know the agent UnknownAgent."""

    def __init__(self, client: OrchestratorClient, cache_seconds: float = 5.0,
                 always_ask: Collection[str] = (), clock: Clock = system_clock) -> None:
        self._client = client
        self._cache_seconds = cache_seconds
        self._always_ask = set(always_ask)
        self._clock = clock
        self._views: dict[str, tuple[float, AgentPermissions]] = {}
        self._loading: dict[str, asyncio.Future[AgentPermissions]] = {}
        self._generation = 0

    def configure(self, cache_seconds: float, always_ask: Collection[str]) -> None:
        self._cache_seconds = cache_seconds
        self._always_ask = set(always_ask)

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def invalidate(self, agent_id: str | None = None) -> None:
        self._generation += 1  # an answer already in flight may predate the change: don't keep it
        if agent_id is None:
            self._views.clear()
            self._loading.clear()
        else:
            self._views.pop(agent_id, None)
            self._loading.pop(agent_id, None)

    async def _view(self, agent_id: str) -> AgentPermissions:
        cached = self._views.get(agent_id)
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        loading = self._loading.get(agent_id)
        if loading is None:  # one question in flight per agent, however many calls wait on the answer
            loading = self._loading[agent_id] = asyncio.ensure_future(self._load(agent_id))
            loading.add_done_callback(lambda done: self._loading.get(agent_id) is done
                                      and self._loading.pop(agent_id, None))
        return await asyncio.shield(loading)

    async def _load(self, agent_id: str) -> AgentPermissions:
        asked, generation = time.monotonic(), self._generation
        view = await self._client.get_permissions(agent_id)
        if generation == self._generation:
            self._views[agent_id] = (asked, view)
        return view

    async def is_allowed(self, agent_id: str, service: str, operation: Operation, args_hash: str = "") -> bool:
        view = await self._view(agent_id)
        now = self._clock()

        def live(grant: GrantView) -> bool:
            return grant.service == service and (grant.expires_at is None or grant.expires_at.timestamp() > now) \
                and ("*" in grant.operations or operation.name in grant.operations)

        for grant in view.grants or ():
            if (grant.args_hash and grant.args_hash == args_hash and live(grant) and grant.id
                    and await self._spend(grant.id, agent_id)):
                return True
        if operation.risk in self._always_ask:
            return False
        if view.grants is None:  # the external orchestrator: whole services only
            return service in view.allowed_mcps
        return any(live(grant) for grant in view.grants if not grant.args_hash)

    async def _spend(self, grant_id: str, agent_id: str) -> bool:
        """A one-time approval covers one call: revoking it is how it is spent (only one caller wins)."""
        self.invalidate(agent_id)
        try:
            await self._client.revoke_grant(grant_id, spent=True)
        except OrchestratorUnavailable:
            return False
        return True
