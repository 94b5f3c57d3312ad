"""Loopback ports for tests and benches."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# A port from bind(0) comes from the range the kernel also hands out to outgoing connections: between this
# process checking it free and a server binding it, any connection (ours, a test's client) could take it, and
# the server would fail with "address in use". Ports below that range are never taken that way.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_handed_out: set[int] = set()  # never the same port twice in one run, though its first taker let it go
_pick = random.SystemRandom()  # apart from the random module's state, which tests may seed


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, below the kernel's range for outgoing connections where
    there is room (free until someone binds it), and not handed out before in this process."""
    start = _ephemeral_start()
    if start - _LOWEST >= 1_000:
        for _ in range(200):
            port = _pick.randrange(_LOWEST, start)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
