"""The slash form's per-service shorthands (gateway-protocol.md), parsed as the existing agents write them."""

from __future__ import annotations

import pytest

from gateway_core.catalog import DEFAULT_CATALOG, Catalog
from gateway_core.errors import InvalidParams, ServiceNotFound
from gateway_core.slash import SlashCommand, parse_slash_command

CATALOG = Catalog(DEFAULT_CATALOG)


@pytest.mark.parametrize(("command", "expected"), [
    ("/mcp-coolify deploy-application my-app", SlashCommand("coolify", "deploy-application", ["my-app"])),
    ('/mcp-coolify create-project "Kids Ascension" \'the main one\'',
     SlashCommand("coolify", "create-project", ["Kids Ascension", "the main one"])),
    ("/mcp-postgres kids-ascension-db list tables", SlashCommand("postgres", "list-tables", [], "kids-ascension")),
    ("/mcp-postgres ol-db describe users", SlashCommand("postgres", "describe-table", ["users"], "ozean-licht")),
    ("/mcp-postgres ka-db desc users", SlashCommand("postgres", "describe-table", ["users"], "kids-ascension")),
    ("/mcp-postgres ka-db select * from users where name = 'O''Brien'",
     SlashCommand("postgres", "query", ["select * from users where name = 'O''Brien'"], "kids-ascension")),
    ("/mcp-postgresql query SELECT 1", SlashCommand("postgres", "query", ["SELECT 1"])),
    ("/mcp-mem0 remember the deploy key rotates on Fridays",
     SlashCommand("mem0", "remember", ["the deploy key rotates on Fridays"])),
    ("/mcp-memory search deploy key", SlashCommand("mem0", "search", ["deploy key"])),
    ("/mcp-cloudflare dns list example.com", SlashCommand("cloudflare", "dns-list", ["example.com"])),
    ("/mcp-cf zone get z1", SlashCommand("cloudflare", "zone-get", ["z1"])),
    ("/mcp-github create_issue repo title", SlashCommand("github", "create-issue", ["repo", "title"])),
    ("/mcp-gh list_repos", SlashCommand("github", "list-repos", [])),
    ('/mcp-n8n execute nightly {"dry": true, "n": 2}',
     SlashCommand("n8n", "execute-workflow", ["nightly", {"dry": True, "n": 2}])),
    ("/mcp-workflow execute nightly", SlashCommand("n8n", "execute-workflow", ["nightly"])),
])
def test_shorthands_become_operations_and_arguments(command: str, expected: SlashCommand) -> None:
    assert parse_slash_command(command, CATALOG) == expected


@pytest.mark.parametrize("command", ["deploy my-app", "/mcp-coolify", "/mcp-coolify 'unclosed",
                                     "/mcp-n8n execute nightly {not json", "/mcp-postgres ka-db"])
def test_malformed_commands_are_invalid_params(command: str) -> None:
    with pytest.raises(InvalidParams):
        parse_slash_command(command, CATALOG)


def test_an_unknown_service_lists_the_available_ones() -> None:
    with pytest.raises(ServiceNotFound) as refused:
        parse_slash_command("/mcp-nosuch do-it", CATALOG)
    assert refused.value.data is not None and "coolify" in refused.value.data["available"]
