"""Who a handler is serving: the gateway names the caller around each call (`serving`), and a handler that
scopes by caller reads it (`calling_agent`): mem0's default `user_id`, minio's `uploadedBy`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_CALLER: ContextVar[str | None] = ContextVar("mcp_console_caller", default=None)


def calling_agent() -> str | None:
    """The authenticated agent (or `operator:<login>`) of the call being executed; None outside a call."""
    return _CALLER.get()


@contextlib.contextmanager
def serving(caller_id: str) -> Iterator[None]:
    """Names the caller for the handler code run inside (contextvars follow awaits and tasks)."""
    token = _CALLER.set(caller_id)
    try:
        yield
    finally:
        _CALLER.reset(token)
