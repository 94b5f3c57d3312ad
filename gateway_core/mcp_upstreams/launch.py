"""How each MCP upstream is reached, from the settings: the catalog's three (playwright, shadcn, magicui: their
`*_MCP_COMMAND` variable, over `[mcp_servers.NAME]`) and every other `[mcp_servers.NAME]`, with `${VAR}` in
`env` and `headers` read from the gateway's environment."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from gateway_core.catalog import Catalog, ServiceSpec
from gateway_core.config import ConfigError, McpServerSettings, Settings
from gateway_core.ratelimit import RateLimit
from gateway_core.redaction import is_secret_key

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RATE_LIMIT = RateLimit(max_requests=60, window_ms=60_000)  # a configured upstream's, unless [rate_limit] says


@dataclass(frozen=True, slots=True)
class UpstreamLaunch:
    """One MCP upstream, ready to start: a command (stdio) or a URL (Streamable HTTP), with the variables the
    child gets beside the SDK's few and the headers every request carries. Both hold secrets: never shown."""

    service: str
    command: tuple[str, ...] | None
    url: str | None
    env: Mapping[str, str] = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)
    cwd: Path | None
    settings: McpServerSettings = field(repr=False)  # isolation, protocol, start, timeouts, tools, risk, ...
    filled: tuple[str, ...] = field(default=(), repr=False)  # the values ${VAR}s were filled with

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def secrets(self) -> list[str]:
        """What must not be shown if the server echoes it: what came from the gateway's environment (`${VAR}`),
        and the values of variables and headers named as secrets are (API_KEY, Authorization). Not every value:
        `LOG_LEVEL = "info"` masked the word wherever it was written."""
        named = [value for key, value in (*self.env.items(), *self.headers.items()) if is_secret_key(key)]
        return [*self.filled, *named]


@dataclass(frozen=True, slots=True)
class NotConfigured:
    """An upstream that cannot start: the settings (or environment variables) it lacks."""

    missing: list[str]


def upstream_specs(settings: Settings, catalog: Catalog) -> tuple[ServiceSpec, ...]:
    """The services `[mcp_servers]` adds to `catalog` (the catalog's own MCP servers are in it already).
    ConfigError for a name that is already a native service's or alias, or that names no way to reach it."""
    specs = []
    for name, server in settings.mcp_servers.items():
        known = catalog.resolve(name)
        if known is not None and not known.mcp_server:
            raise ConfigError(f"invalid settings: mcp_servers.{name}: {name!r} names the service {known.name}; "
                              "give the MCP server another name")
        if known is not None:
            continue
        if (server.command is None) == (server.url is None):
            raise ConfigError(f"invalid settings: mcp_servers.{name}: give either command (a program and its "
                              "arguments) or url (Streamable HTTP)")
        specs.append(ServiceSpec(
            name, "local" if server.command is not None else "server", False, server.avg_tokens_per_call,
            server.cost_per_call, RATE_LIMIT, server.description or f"MCP server {name}", mcp_server=True))
    return tuple(specs)


def resolve_upstreams(settings: Settings, catalog: Catalog,
                      environ: Mapping[str, str] | None = None) -> dict[str, UpstreamLaunch | NotConfigured]:
    """Every MCP service of `catalog`, ready to start or naming what it lacks."""
    environ = os.environ if environ is None else environ
    resolved: dict[str, UpstreamLaunch | NotConfigured] = {}
    for spec in catalog.services.values():
        if spec.mcp_server:
            resolved[spec.name] = _resolve(spec, settings, environ)
    return resolved


def _resolve(spec: ServiceSpec, settings: Settings, environ: Mapping[str, str]) -> UpstreamLaunch | NotConfigured:
    server = settings.mcp_servers.get(spec.name) or McpServerSettings()
    command, url = (tuple(server.command) if server.command else None), server.url
    # The catalog's servers: their variable (shlex-split, or a URL) wins over the file's command or url.
    variables = [name for group in spec.required_settings for name in group]
    given = next((value for name in variables if (value := settings.setting(name))), None)
    if given is not None:
        given = given.strip()
        command, url = (None, given) if given.startswith(("http://", "https://")) else (tuple(shlex.split(given)), None)
    if not command and not url:
        return NotConfigured(variables or [f"mcp_servers.{spec.name}.command"])
    missing: list[str] = []
    filled: list[str] = []
    env = _filled(server.env, environ, missing, filled)
    headers = _filled(server.headers, environ, missing, filled)
    if missing:
        return NotConfigured(sorted(set(missing)))
    return UpstreamLaunch(spec.name, command or None, None if command else url, env, headers, server.cwd, server,
                          tuple(filled))


def _filled(values: Mapping[str, SecretStr], environ: Mapping[str, str], missing: list[str],
            filled: list[str]) -> dict[str, str]:
    """Secret values with each `${VAR}` taken from the gateway's environment (each such value also into
    `filled`); a VAR not set goes to `missing`."""

    def variable(match: re.Match[str]) -> str:
        value = environ.get(match[1])
        if value is None:
            missing.append(match[1])
        else:
            filled.append(value)
        return value or ""

    return {key: VARIABLE.sub(variable, secret.get_secret_value()) for key, secret in values.items()}
