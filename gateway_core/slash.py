"""The slash-command form: `/mcp-<service> <operation> <args...>`, with the existing per-service shorthands."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from gateway_core.catalog import Catalog
from gateway_core.errors import InvalidParams, ServiceNotFound

POSTGRES_DATABASES = {
    "kids-ascension-db": "kids-ascension",
    "ka-db": "kids-ascension",
    "ozean-licht-db": "ozean-licht",
    "ol-db": "ozean-licht",
}
_HEAD = re.compile(r"^\s*/mcp-(?P<service>[A-Za-z0-9_-]+)(?:\s+(?P<rest>.*))?$", re.S)
_SQL_KEYWORDS = ("query", "select")
_MEMORY_VERBS = ("remember", "search", "store")


@dataclass(frozen=True)
class SlashCommand:
    service: str
    operation: str
    args: list[Any] = field(default_factory=list)
    database: str | None = None


def parse_slash_command(command: str, catalog: Catalog) -> SlashCommand:
    head = _HEAD.match(command)
    if head is None:
        raise _invalid("a command looks like '/mcp-<service> <operation> [args...]'")
    spec = catalog.resolve(head["service"])
    if spec is None:
        raise ServiceNotFound(f"Service {head['service']} not found", {"available": catalog.names()})
    rest = (head["rest"] or "").strip()
    tokens = _split(rest)
    if not tokens:
        raise _invalid(f"no operation given: '/mcp-{head['service']} <operation> [args...]'")
    service = spec.name
    if service == "postgres":
        return _postgres(rest, tokens)
    if service == "mem0" and tokens[0] in _MEMORY_VERBS:
        return SlashCommand(service, tokens[0], [" ".join(tokens[1:])] if tokens[1:] else [])
    if service == "cloudflare" and len(tokens) >= 2:
        return SlashCommand(service, f"{tokens[0]}-{tokens[1]}", tokens[2:])
    if service == "github":
        return SlashCommand(service, tokens[0].replace("_", "-"), tokens[1:])
    if service == "n8n" and tokens[0] == "execute":
        return _n8n_execute(rest)
    return SlashCommand(service, tokens[0], tokens[1:])


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:  # an unclosed quote
        raise _invalid(f"cannot read the command: {exc}") from None


def _postgres(rest: str, tokens: list[str]) -> SlashCommand:
    database = POSTGRES_DATABASES.get(tokens[0])
    if database is not None:
        rest = rest.split(None, 1)[1] if len(tokens) > 1 else ""
        tokens = tokens[1:]
    if not tokens:
        raise _invalid("no operation given after the database")
    verb = tokens[0].lower()
    if verb in _SQL_KEYWORDS:
        # The SQL is taken as written: quotes inside it belong to SQL, not to the command line.
        after_verb = rest.split(None, 1)
        sql = after_verb[1] if len(after_verb) > 1 else ""
        if verb == "select":
            sql = f"{tokens[0]} {sql}".strip()
        return SlashCommand("postgres", "query", [sql] if sql else [], database)
    if verb == "list" and len(tokens) > 1 and tokens[1].lower() == "tables":
        return SlashCommand("postgres", "list-tables", tokens[2:], database)
    if verb in ("describe", "desc"):
        return SlashCommand("postgres", "describe-table", tokens[1:], database)
    return SlashCommand("postgres", tokens[0], tokens[1:], database)


def _n8n_execute(rest: str) -> SlashCommand:
    parts = rest.split(None, 2)
    if len(parts) < 2:
        raise _invalid("n8n execute takes a workflow and optional JSON input: execute <workflow> [json]")
    workflow_args: list[Any] = [parts[1]]
    if len(parts) == 3:
        try:
            workflow_args.append(json.loads(parts[2]))
        except json.JSONDecodeError as exc:
            raise _invalid(f"the workflow input is not valid JSON: {exc.msg}") from None
    return SlashCommand("n8n", "execute-workflow", workflow_args)


def _invalid(message: str) -> InvalidParams:
    return InvalidParams(f"Invalid command: {message}", {"errors": [{"field": "command", "message": message}]})
