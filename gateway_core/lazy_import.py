"""Heavy modules (the MCP SDK takes about a second) imported while the event loop keeps serving and drawing."""

from __future__ import annotations

import asyncio
import gc
import importlib
import threading
from types import ModuleType

# One import at a time: the MCP SDK's client and server packages import each other, and two threads importing
# them at once (the front door and an upstream starting together) deadlock on the module locks, which Python
# breaks by handing one of them a partly initialized module ("cannot import name 'Server'").
_ONE_AT_A_TIME = threading.Lock()


def _import_all(names: tuple[str, ...]) -> list[ModuleType]:
    with _ONE_AT_A_TIME:
        return [importlib.import_module(name) for name in names]


async def import_in_thread(*names: str) -> list[ModuleType]:
    """Imports `names` on a worker thread, then takes what exists now out of the collector's scans (gc.freeze):
    modules live as long as the process, and a full collection that scanned the SDK's objects stalled every
    call in flight for about 80 ms (measured with bench/gateway_overhead.py)."""
    modules = await asyncio.to_thread(_import_all, names)
    gc.freeze()
    return modules
