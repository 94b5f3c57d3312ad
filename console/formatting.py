"""How numbers, ages and histories read on screen."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

BLOCKS = "▁▂▃▄▅▆▇█"
STATUS_LABEL = {"healthy": "● healthy", "degraded": "◐ degraded", "down": "✖ down",
                "not_configured": "○ not configured", "unknown": "… checking"}


def literal(text: str) -> str:
    """`text` shown as it is where Textual reads markup and takes only a string (a Select's prompt, a palette
    command's help): every `[` escaped. Textual's escape() and Rich's leave a lone "[ and ]", which the markup
    then swallows. Elsewhere outside text goes to the screen as Content or with markup=False."""
    return text.replace("[", "\\[")


def describe_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86_400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86_400} d {seconds % 86_400 // 3600} h"


def sparkline(values: Iterable[float | None], width: int = 8) -> str:
    """Recent values as block characters, scaled to their own maximum; a failed check is a gap."""
    recent = list(values)[-width:]
    known = [value for value in recent if value is not None]
    if not known:
        return ""
    top = max(known) or 1.0
    return "".join(" " if value is None else BLOCKS[min(7, int(value / top * 7.999))] for value in recent)


def clock_time(ts: float) -> str:
    """HH:MM:SS in UTC, the way the ledger and the audit log keep time."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def day_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def money(usd: float) -> str:
    return f"${usd:.4f}"
