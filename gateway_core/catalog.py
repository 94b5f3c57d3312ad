"""The services the gateway knows, with the existing catalog's numbers (gateway-protocol.md)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway_core.ratelimit import RateLimit

Location = Literal["server", "local"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    location: Location
    always_active: bool
    avg_tokens_per_call: int
    cost_per_call: float
    rate_limit: RateLimit
    description: str
    # Settings (environment variable names) it needs: each inner tuple is satisfied by any one of its names;
    # a name may be several joined by " + ", all of which must be set (a GitHub App's three settings).
    required_settings: tuple[tuple[str, ...], ...] = ()
    aliases: tuple[str, ...] = ()
    # An MCP server the gateway starts or dials (gateway_core/mcp_upstreams/): its operations are the tools it
    # lists, and a catalog one takes its command (or URL) from the setting it requires.
    mcp_server: bool = False


def _per_minute(n: int) -> RateLimit:
    return RateLimit(max_requests=n, window_ms=60_000)


DEFAULT_CATALOG: tuple[ServiceSpec, ...] = (
    ServiceSpec("postgres", "server", False, 500, 0.0015, _per_minute(120),
                "PostgreSQL databases: list tables, describe, read-only queries",
                (("POSTGRES_KA_URL", "POSTGRES_KIDS_ASCENSION_URL", "POSTGRES_KA_HOST", "POSTGRES_OL_URL",
                  "POSTGRES_OZEAN_LICHT_URL", "POSTGRES_OL_HOST", "POSTGRES_SHARED_URL", "POSTGRES_SHARED_HOST",
                  "MCP_CONSOLE_POSTGRES__DATABASES"),), ("postgresql",)),
    ServiceSpec("mem0", "server", True, 200, 0.0006, _per_minute(300),
                "Agent memory: remember, search, store", (("MEM0_API_URL",),), ("memory",)),
    ServiceSpec("cloudflare", "server", False, 300, 0.0009, _per_minute(60),
                "Cloudflare: DNS, zones, Stream, analytics, cache",
                (("CLOUDFLARE_API_TOKEN",), ("CLOUDFLARE_ACCOUNT_ID",)), ("cf",)),
    ServiceSpec("github", "server", False, 400, 0.0012, _per_minute(60),
                "GitHub: repositories, pull requests, issues, branches, Actions",
                (("GITHUB_PAT", "GITHUB_TOKEN", "GITHUB_APP_ID + GITHUB_PRIVATE_KEY + GITHUB_INSTALLATION_ID"),),
                ("gh",)),
    ServiceSpec("n8n", "server", False, 250, 0.0008, _per_minute(60),
                "n8n: workflows, executions, webhooks", (("N8N_API_URL",), ("N8N_API_KEY",)), ("workflow",)),
    ServiceSpec("coolify", "server", False, 200, 0.0006, _per_minute(100),
                "Coolify: applications, deployments, databases, servers, services",
                (("COOLIFY_API_URL",), ("COOLIFY_API_TOKEN",))),
    ServiceSpec("minio", "server", False, 350, 0.001, _per_minute(120),
                "MinIO object storage",
                (("MINIO_ENDPOINT",), ("MINIO_ACCESS_KEY",), ("MINIO_SECRET_KEY",))),
    ServiceSpec("playwright", "local", False, 1000, 0.003, _per_minute(30),
                "Browser automation (a local MCP server)", (("PLAYWRIGHT_MCP_COMMAND",),), mcp_server=True),
    ServiceSpec("shadcn", "local", False, 150, 0.0005, _per_minute(60),
                "shadcn/ui components (a local MCP server)", (("SHADCN_MCP_COMMAND",),), mcp_server=True),
    ServiceSpec("magicui", "local", False, 150, 0.0005, _per_minute(60),
                "Magic UI components (a local MCP server)", (("MAGICUI_MCP_COMMAND",),), mcp_server=True),
)


class Catalog:
    """Services by name and alias."""

    def __init__(self, services: Iterable[ServiceSpec]) -> None:
        self.services: dict[str, ServiceSpec] = {}
        self._names: dict[str, str] = {}
        for spec in services:
            if spec.name in self.services:
                raise ValueError(f"service {spec.name!r} is declared twice")
            self.services[spec.name] = spec
            for name in (spec.name, *spec.aliases):
                if self._names.setdefault(name, spec.name) != spec.name:
                    raise ValueError(f"{name!r} names two services")

    def extended(self, services: Iterable[ServiceSpec]) -> Catalog:
        """This catalog and `services` after it (ValueError for a name or alias already taken)."""
        return Catalog((*self.services.values(), *services))

    def resolve(self, name: str) -> ServiceSpec | None:
        canonical = self._names.get(name.strip().lower())
        return self.services[canonical] if canonical else None

    def names(self) -> list[str]:
        return list(self.services)
