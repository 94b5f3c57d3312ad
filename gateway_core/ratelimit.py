"""Token buckets: per agent, and per agent and service."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel, Field


class RateLimit(BaseModel):
    """`max_requests` per `window_ms`, refilled continuously (a bucket of that capacity)."""

    max_requests: int = Field(gt=0)
    window_ms: int = Field(gt=0)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass
class TokenBuckets:
    limit: RateLimit
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: str) -> float:
        """Takes one token for `key`; returns 0 on success, else the milliseconds until one is free."""
        now = self.clock()
        capacity = float(self.limit.max_requests)
        rate_per_s = capacity / (self.limit.window_ms / 1000.0)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate_per_s)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate_per_s * 1000.0

    def give_back(self, key: str) -> None:
        """Returns a token taken for a call that another limit then refused."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(self.limit.max_requests), bucket.tokens + 1.0)
