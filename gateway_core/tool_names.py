"""MCP tool names for operations: `<service>_<operation>`, reversible through a table built the same way in
every process from the same operations (mcp.md §1 "Names").

A name is at most 64 characters of `[A-Za-z0-9_-]`, what the Claude API, OpenAI, Windsurf and Copilot CLI take
(the MCP spec allows `.` and 128). Service names have no `_`, so a plain name splits at its first `_`; names
that were shortened or that clash end in 6 hex digits of a hash, and only the table maps those back."""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from collections.abc import Iterable

log = logging.getLogger(__name__)

MAX_TOOL_NAME = 64
HASH_DIGITS = 6
# Clients put their own prefix before a tool's name (Claude Code: `mcp__<server>__`): names longer than this may
# pass the 64 characters once they do.
LONG_TOOL_NAME = 46
_OUTSIDE_NAME = re.compile(r"[^A-Za-z0-9_-]")

ToolKey = tuple[str, str]  # (service, operation)


def plain_tool_name(service: str, operation: str) -> str:
    """`<service>_<operation>`, each character of the operation's name outside `[A-Za-z0-9_-]` turned into `-`."""
    return f"{service}_{_OUTSIDE_NAME.sub('-', operation)}"


def hashed_tool_name(service: str, operation: str) -> str:
    """The plain name's first 57 characters, `-`, then 6 hex digits of sha256(`service/operation`)."""
    digest = hashlib.sha256(f"{service}/{operation}".encode()).hexdigest()[:HASH_DIGITS]
    return f"{plain_tool_name(service, operation)[:MAX_TOOL_NAME - HASH_DIGITS - 1]}-{digest}"


class ToolNames:
    """Tool name ↔ (service, operation) for a set of operations. The result depends on the set alone, never on
    its order: of names that clash, the one whose operation needed no change keeps the plain name (at most one
    can), and every other one is hashed."""

    def __init__(self, keys: Iterable[ToolKey]) -> None:
        by_plain_name: dict[str, list[ToolKey]] = defaultdict(list)
        for service, operation in keys:
            by_plain_name[plain_tool_name(service, operation)].append((service, operation))
        self._by_name: dict[str, ToolKey] = {}
        self._by_key: dict[ToolKey, str] = {}
        for plain_name, clashing in sorted(by_plain_name.items()):
            for service, operation in sorted(clashing):
                unchanged = plain_name == f"{service}_{operation}"
                name = plain_name if len(plain_name) <= MAX_TOOL_NAME and (len(clashing) == 1 or unchanged) else (
                    hashed_tool_name(service, operation))
                self._add(name, (service, operation))

    def _add(self, name: str, key: ToolKey) -> None:
        taken = self._by_name.setdefault(name, key)
        if taken != key:  # two hashes alike: vanishingly rare, and left out rather than guessed between
            log.warning("tool name %s is taken by %s.%s: %s.%s is not listed", name, *taken, *key)
            return
        self._by_key[key] = name
        if len(name) > LONG_TOOL_NAME:
            log.warning("tool name %s has %d characters: clients that prefix names may refuse it", name, len(name))

    def name_of(self, service: str, operation: str) -> str | None:
        return self._by_key.get((service, operation))

    def resolve(self, name: str) -> ToolKey | None:
        """The (service, operation) a tool name stands for; None for a name not in the table."""
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._by_key)

    def items(self) -> Iterable[tuple[str, ToolKey]]:
        """(name, (service, operation)) in name order."""
        return sorted(self._by_name.items())
