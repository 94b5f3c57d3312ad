"""The slash form (gateway-protocol.md), read through a service's own declarations: a service declared only
here gets the existing agents' shorthands (two words for one name, aliases, `_` as `-`, the rest of the
line as text, a word then JSON, a leading word that sets an argument) without slash.py knowing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field

from gateway_core import slash
from gateway_core.catalog import DEFAULT_CATALOG, Catalog, ServiceSpec
from gateway_core.errors import InvalidParams, ServiceNotFound
from gateway_core.handlers import HANDLER_CLASSES
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable
from gateway_core.ratelimit import RateLimit
from gateway_core.slash import SlashCommand, parse_slash_command


class TableArgs(OperationArgs):
    table: str = Field(min_length=1)


class SqlArgs(OperationArgs):
    sql: str = Field(min_length=1)


class IssueArgs(OperationArgs):
    repo: str
    title: str


class WorkflowArgs(OperationArgs):
    workflow: str
    data: dict[str, object] | None = None


NOTES = OperationTable([
    Operation("list-tables", NoArgs, "read", "Tables"),
    Operation("describe-table", TableArgs, "read", "One table", aliases=("describe", "desc")),
    Operation("query", SqlArgs, "read", "SQL", aliases=("select",), slash_rest="text", slash_keeps=("select",)),
    Operation("remember", SqlArgs, "write", "Keep a note", aliases=("store",), slash_rest="text"),
    Operation("dns-list", NoArgs, "read", "Records"),
    Operation("create-issue", IssueArgs, "write", "An issue"),
    Operation("execute-workflow", WorkflowArgs, "write", "Run one", aliases=("execute",),
              slash_rest="word_and_json"),
], slash_prefixes={"ka-db": {"database": "kids-ascension"}, "ol-db": {"database": "ozean-licht"}})
NOTES_SPEC = ServiceSpec("notes", "server", False, 1, 0.0, RateLimit(max_requests=1, window_ms=1000), "Notes",
                         aliases=("nb",))
CATALOG = Catalog((*DEFAULT_CATALOG, NOTES_SPEC))


def operations_of(service: str) -> OperationTable:
    handler = HANDLER_CLASSES.get(service)
    return NOTES if service == "notes" else handler.operations if handler else OperationTable(())


@pytest.mark.parametrize(("command", "expected"), [
    ("/mcp-coolify deploy-application my-app", SlashCommand("coolify", "deploy-application", ["my-app"])),
    ('/mcp-coolify create-project "Kids Ascension" \'the main one\'',
     SlashCommand("coolify", "create-project", ["Kids Ascension", "the main one"])),
    ("/mcp-notes ka-db list tables", SlashCommand("notes", "list-tables", [], {"database": "kids-ascension"})),
    ("/mcp-notes ol-db describe users", SlashCommand("notes", "describe-table", ["users"],
                                                     {"database": "ozean-licht"})),
    ("/mcp-nb desc users", SlashCommand("notes", "describe-table", ["users"])),
    ("/mcp-notes ka-db select * from users where name = 'O''Brien'",
     SlashCommand("notes", "query", ["select * from users where name = 'O''Brien'"], {"database": "kids-ascension"})),
    ("/mcp-notes query SELECT 1", SlashCommand("notes", "query", ["SELECT 1"])),
    ("/mcp-notes remember the deploy key rotates on Fridays",
     SlashCommand("notes", "remember", ["the deploy key rotates on Fridays"])),
    ("/mcp-notes store it's 'quoted'", SlashCommand("notes", "remember", ["it's 'quoted'"])),
    ("/mcp-notes dns list", SlashCommand("notes", "dns-list", [])),
    ("/mcp-notes create_issue repo title", SlashCommand("notes", "create-issue", ["repo", "title"])),
    ('/mcp-notes execute nightly {"dry": true, "n": 2}',
     SlashCommand("notes", "execute-workflow", ["nightly", {"dry": True, "n": 2}])),
    ("/mcp-notes execute nightly", SlashCommand("notes", "execute-workflow", ["nightly"])),
    ("/mcp-notes no-such-thing a b", SlashCommand("notes", "no-such-thing", ["a", "b"])),  # the pipeline says -32002
])
def test_shorthands_come_from_the_declarations(command: str, expected: SlashCommand) -> None:
    assert parse_slash_command(command, CATALOG, operations_of) == expected


@pytest.mark.parametrize("command", ["deploy my-app", "/mcp-coolify", "/mcp-coolify 'unclosed",
                                     "/mcp-notes execute nightly {not json", "/mcp-notes ka-db",
                                     '/mcp-notes execute nightly {"dry": "\\ud800"}',
                                     # What the door refuses in a body: NaN, Infinity, nesting past its limit.
                                     '/mcp-notes execute nightly {"n": NaN}', '/mcp-notes execute nightly [Infinity]',
                                     "/mcp-notes execute nightly " + "[" * 150 + "]" * 150])
def test_malformed_commands_are_invalid_params(command: str) -> None:
    with pytest.raises(InvalidParams):
        parse_slash_command(command, CATALOG, operations_of)


def test_an_unknown_service_lists_the_available_ones() -> None:
    with pytest.raises(ServiceNotFound) as refused:
        parse_slash_command("/mcp-nosuch do-it", CATALOG, operations_of)
    assert refused.value.data is not None and "coolify" in refused.value.data["available"]


def test_the_slash_parser_names_no_service_and_no_operation() -> None:
    source = Path(slash.__file__).read_text()
    names = {spec.name for spec in DEFAULT_CATALOG} | {alias for spec in DEFAULT_CATALOG for alias in spec.aliases}
    names |= {name for handler in HANDLER_CLASSES.values() for name in handler.operations}
    names |= {"list-tables", "describe", "select", "execute", "remember", "kids-ascension"}
    named = {name for name in names if re.search(rf"[\"'/]{re.escape(name)}\b", source)}
    assert named == set()
