"""Identifiers."""

from __future__ import annotations

import random
import time
import uuid

_random = random.Random()  # seeded once from the OS; ids need uniqueness, not secrecy


def time_ordered_uuid() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Consecutive ids sort by
    time, so ledger inserts append to the index instead of touching a random page each."""
    millis = time.time_ns() // 1_000_000
    random_bits = _random.getrandbits(74)
    value = (millis << 80) | (0x7 << 76) | ((random_bits >> 62) << 64) | (0b10 << 62) | (random_bits & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))
