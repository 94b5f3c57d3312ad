"""What calls used: since the gateway started (in all, and per declared service) and in the current UTC
day per caller, which the budget and the console's cost by agent read."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from gateway_core.clock import Clock, utc_midnight
from gateway_core.store import CallRecord, SQLiteStore, UsageTotals


@dataclass(slots=True)
class DailyUsage:
    """Usage in one UTC day, [starts, ends): every call in `total`, and per caller (agent or operator)."""

    starts: float = 0.0
    ends: float = 0.0
    total: UsageTotals = field(default_factory=UsageTotals)
    by_caller: dict[str, UsageTotals] = field(default_factory=dict)

    @classmethod
    def of_day_at(cls, ts: float, usage: Mapping[str | None, UsageTotals] | None = None) -> DailyUsage:
        """The day around `ts`, with `usage` so far (None: calls with no known caller)."""
        midnight = utc_midnight(ts)
        day = cls(midnight, midnight + 86_400)
        for caller, totals in (usage or {}).items():
            day.total.include(totals)
            if caller is not None:
                day.by_caller[caller] = totals
        return day

    def covers(self, ts: float) -> bool:
        return self.starts <= ts < self.ends

    def add(self, record: CallRecord) -> None:
        self.total.add(record)
        if record.agent_id is not None:
            self.by_caller.setdefault(record.agent_id, UsageTotals()).add(record)


class Usage:
    """Counts every recorded call; `services` are the names kept per service (never a name a caller made
    up: those would grow without bound)."""

    def __init__(self, services: Collection[str], clock: Clock) -> None:
        self._services = frozenset(services)
        self._clock = clock
        self.today = DailyUsage.of_day_at(clock())
        self.since_start = UsageTotals()
        self.by_service: dict[str, UsageTotals] = {}

    async def load_today(self, store: SQLiteStore) -> None:
        """Today's usage as the ledger has it (a restart does not reset a caller's budget)."""
        now = self._clock()
        self.today = DailyUsage.of_day_at(now, await store.usage_by_caller_since(utc_midnight(now)))

    def add(self, record: CallRecord) -> None:
        self.since_start.add(record)
        if record.service in self._services:
            self.by_service.setdefault(record.service, UsageTotals()).add(record)
        if not self.today.covers(record.ts):
            self.today = DailyUsage.of_day_at(record.ts)
        self.today.add(record)

    def spent_today(self, caller: str) -> float:
        totals = self.today.by_caller.get(caller)
        return totals.cost_usd if totals is not None and self.today.covers(self._clock()) else 0.0
