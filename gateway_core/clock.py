"""The one clock: every time the gateway decides or records with (grant and request expiry, request TTLs,
ledger and audit times, the usage day) comes from a `Clock` handed down from where the runtime is
assembled. Tests freeze it; durations (timeouts, latencies) use the monotonic clock instead."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]  # seconds since the Unix epoch
system_clock: Clock = time.time


class FrozenClock:
    """A clock that stands still until it is moved (tests, snapshots)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def iso_utc(ts: float) -> str:
    """ISO-8601 UTC with milliseconds and a Z, as the wire contracts write times."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_midnight(ts: float) -> float:
    """The start of the UTC day `ts` falls in."""
    return datetime.fromtimestamp(ts, UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
