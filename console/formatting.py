"""How numbers, ages and histories read on screen."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

BLOCKS = "▁▂▃▄▅▆▇█"
STATUS_LABEL = {"healthy": "● healthy", "degraded": "◐ degraded", "down": "✖ down",
                "not_configured": "○ not configured", "unknown": "… checking"}


# C0 controls (tab and newline too: on one line of the screen they would draw lines of their own), DEL and C1.
# ESC starts a sequence the terminal obeys: clear the screen, retitle the window, set the clipboard.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """Someone else's text (an agent's, an orchestrator's, an MCP server's, an upstream's) for a line of the
    screen: each control character written out as `\x1b`, so that the terminal obeys none and the operator sees
    it was there. Textual passes ESC through to the terminal as it is."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


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
