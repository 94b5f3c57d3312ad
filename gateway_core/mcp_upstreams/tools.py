"""An upstream's `tools/list` as its service's operations: the allow-list, each tool's risk (the config's
`risk`, then `readOnlyHint` → read, `destructiveHint` → destructive, else write), the first of two tools
with one name, and the risks a new listing changed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway_core.config import McpServerSettings
from gateway_core.operations import OperationTable, Risk, spelling
from gateway_core.upstream_tool import UpstreamTool, compile_schema


@dataclass(frozen=True, slots=True)
class RiskChange:
    tool: str
    before: Risk
    after: Risk


def tool_risk(name: str, annotations: Mapping[str, Any], settings: McpServerSettings) -> Risk:
    """The config's word first; then the tool's hints. A tool that says neither is a write: MCP reads a missing
    destructiveHint as true, which would ask a one-time approval for every unannotated call."""
    if name in settings.risk:
        return settings.risk[name]
    if annotations.get("readOnlyHint") is True:
        return "read"
    if annotations.get("destructiveHint") is True:
        return "destructive"
    return "write"


def tools_table(listing: Sequence[Mapping[str, Any]], settings: McpServerSettings, log: logging.Logger,
                check_schemas: bool = True) -> OperationTable:
    """The listed tools as operations, in the upstream's order. `check_schemas`: leave out (and log) a tool
    whose input schema is not JSON Schema (a listing read back from the store was checked when it was made)."""
    allowed = set(settings.tools) if settings.tools is not None else None
    tools: list[UpstreamTool] = []
    seen: set[str] = set()
    for entry in listing:
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            log.warning("a listed tool has no name: left out")
            continue
        if allowed is not None and name not in allowed:
            continue
        if spelling(name) in seen:  # calls name operations however they are spelled (`a_b` is `a-b`)
            log.warning("tool %r is listed twice (or as another spelling of one): the first is kept", name)
            continue
        schema = entry.get("inputSchema")
        if not isinstance(schema, Mapping):
            log.warning("tool %r has no input schema: left out", name)
            continue
        if check_schemas:
            try:
                compile_schema(schema)
            except Exception as exc:  # jsonschema's SchemaError, or a schema it cannot even read
                log.warning("tool %r has an input schema that is not JSON Schema (%s): left out", name,
                            type(exc).__name__)
                continue
        seen.add(spelling(name))
        annotations = entry.get("annotations")
        annotations = dict(annotations) if isinstance(annotations, Mapping) else {}
        output_schema = entry.get("outputSchema")
        description = entry.get("description") or entry.get("title") or name
        try:
            tools.append(UpstreamTool.declare(
                name, str(description), schema, tool_risk(name, annotations, settings),
                output_schema=output_schema if isinstance(output_schema, Mapping) else None,
                annotations=annotations))
        except Exception as exc:  # one tool the upstream described as we cannot take must not stop the listing
            log.warning("tool %r cannot be declared (%s: %s): left out", name, type(exc).__name__, exc)
    return OperationTable(tools)


def risk_changes(before: OperationTable, after: OperationTable) -> list[RiskChange]:
    """The tools in both tables whose risk differs."""
    return [RiskChange(name, before[name].risk, operation.risk) for name, operation in after.items()
            if name in before and before[name].risk != operation.risk]
