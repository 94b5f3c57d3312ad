"""Service health: a report per check, and a monitor that probes each configured service on an interval."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway_core.clock import Clock
from gateway_core.periodic import Periodic

HealthStatus = Literal["healthy", "degraded", "down", "not_configured", "unknown"]
HISTORY_LENGTH = 30


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One check's outcome; the monitor stamps `checked_at` with the runtime's clock."""

    status: HealthStatus
    latency_ms: float | None = None
    message: str = ""
    checked_at: float = 0.0


class Checked(Protocol):
    """What the monitor checks: a service's handler."""

    async def health(self) -> HealthReport: ...


class HealthMonitor:
    """Checks every handler at start and then every `interval` seconds, and hands every report to
    `on_report` with the one before it. Keeps the last HISTORY_LENGTH latencies per service for sparklines."""

    def __init__(
        self,
        handlers: Mapping[str, Checked],
        interval: float,
        timeout: float,
        on_report: Callable[[str, HealthReport | None, HealthReport], None],
        clock: Clock,
    ) -> None:
        self._handlers = handlers
        self._clock = clock
        self._timeout = timeout
        self._on_report = on_report
        self.reports: dict[str, HealthReport] = {}
        self.latency_history: dict[str, deque[float | None]] = {
            name: deque(maxlen=HISTORY_LENGTH) for name in handlers
        }
        self._checks_started: dict[str, int] = dict.fromkeys(handlers, 0)
        self._periodic = Periodic(interval, self.check_all, "health-monitor")
        self.first_round_done = asyncio.Event()  # every service checked once since start

    def start(self) -> None:
        self._periodic.start()
        self._periodic.run_soon()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(name) for name in self._handlers))
        self.first_round_done.set()

    async def check(self, service: str) -> HealthReport:
        handler = self._handlers[service]
        self._checks_started[service] += 1
        this_check = self._checks_started[service]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                report = await handler.health()
        except TimeoutError:
            report = HealthReport("down", None, f"health check timed out after {self._timeout:g} s")
        except Exception as exc:  # a broken probe is a down service, not a crashed monitor
            report = HealthReport("down", (time.perf_counter() - started) * 1000,
                                  f"health check failed: {type(exc).__name__}")
        report = dataclasses.replace(report, checked_at=self._clock())
        if this_check != self._checks_started[service]:
            return report  # a newer check started meanwhile: its answer is the one that counts
        previous = self.reports.get(service)
        self.reports[service] = report
        self.latency_history[service].append(report.latency_ms)
        self._on_report(service, previous, report)
        return report
