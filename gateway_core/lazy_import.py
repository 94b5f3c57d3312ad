"""Heavy modules (the MCP SDK takes about a second) imported while the event loop keeps serving and drawing."""

from __future__ import annotations

import asyncio
import gc
import importlib
from types import ModuleType


def _import_all(names: tuple[str, ...]) -> list[ModuleType]:
    return [importlib.import_module(name) for name in names]


async def import_in_thread(*names: str) -> list[ModuleType]:
    """Imports `names` on a worker thread, then takes what exists now out of the collector's scans (gc.freeze):
    modules live as long as the process, and a full collection that scanned the SDK's objects stalled every
    call in flight for about 80 ms (measured with bench/gateway_overhead.py)."""
    modules = await asyncio.to_thread(_import_all, names)
    gc.freeze()
    return modules
