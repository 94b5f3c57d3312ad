"""The slash-command form: `/mcp-<service> <operation> <args...>`, read through each service's own
declarations (operation names and aliases, `_` as `-`, two words for one name as in `list tables`, the
words that may come first, and how the rest of the line becomes arguments). This module names no service
and no operation: a new service's shorthands are part of its declaration."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway_core.catalog import Catalog
from gateway_core.errors import InvalidParams, ServiceNotFound
from gateway_core.models import parse_json_text
from gateway_core.operations import Operation, OperationTable, spelling

_HEAD = re.compile(r"^\s*/mcp-(?P<service>[A-Za-z0-9_-]+)(?:\s+(?P<rest>.*))?$", re.S)


@dataclass(frozen=True)
class SlashCommand:
    service: str
    operation: str
    args: list[Any] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)  # set by a leading word (a database, say)


def parse_slash_command(command: str, catalog: Catalog,
                        operations_of: Callable[[str], OperationTable]) -> SlashCommand:
    head = _HEAD.match(command)
    if head is None:
        raise _invalid("a command looks like '/mcp-<service> <operation> [args...]'")
    spec = catalog.resolve(head["service"])
    if spec is None:
        raise ServiceNotFound(f"Service {head['service']} not found", {"available": catalog.names()})
    table = operations_of(spec.name)
    rest = (head["rest"] or "").strip()
    defaults: dict[str, Any] = {}
    words = rest.split()
    if words and spelling(words[0]) in table.slash_prefixes:
        defaults = table.slash_prefixes[spelling(words[0])]
        rest, words = _after(rest, 1), words[1:]
        if not words:
            raise _invalid(f"no operation given after {head['rest'].split()[0]!r}")
    if not words:
        raise _invalid(f"no operation given: '/mcp-{head['service']} <operation> [args...]'")
    for count in (2, 1):  # the longer name first: "dns list" before "dns"
        operation = table.find("-".join(words[:count])) if len(words) >= count else None
        if operation is not None:
            said = " ".join(words[:count])
            return SlashCommand(spec.name, operation.name, _arguments(operation, said, _after(rest, count)),
                                defaults)
    # Not an operation of this service: the pipeline answers -32002 with the ones it has.
    tokens = _words(rest)
    return SlashCommand(spec.name, tokens[0], tokens[1:], defaults)


def _after(text: str, count: int) -> str:
    """The text after its first `count` words, as written."""
    parts = text.split(None, count)
    return parts[count] if len(parts) > count else ""


def _arguments(operation: Operation, said: str, text: str) -> list[Any]:
    if operation.slash_rest == "text":
        # Taken as written: quotes belong to what is said (SQL, a memory), not to the command line.
        if spelling(said) in {spelling(word) for word in operation.slash_keeps}:
            text = f"{said} {text}".strip()
        return [text] if text else []
    if operation.slash_rest == "word_and_json":
        parts = text.split(None, 1)
        arguments: list[Any] = parts[:1]
        if len(parts) == 2:  # as the door takes a body: no NaN, no nesting past its limit, no lone surrogate
            try:
                arguments.append(parse_json_text(parts[1], f"what follows {parts[0]!r}"))
            except ValueError as exc:
                raise _invalid(str(exc)) from None
        return arguments
    return _words(text)


def _words(text: str) -> list[Any]:
    try:
        return list(shlex.split(text))
    except ValueError as exc:  # an unclosed quote
        raise _invalid(f"cannot read the command: {exc}") from None


def _invalid(message: str) -> InvalidParams:
    return InvalidParams(f"Invalid command: {message}", {"errors": [{"field": "command", "message": message}]})
