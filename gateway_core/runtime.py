"""The gateway and its orchestrator, assembled as `mcp-console serve` (and the console) run them: ours
embedded beside the gateway on the same store, unless an external one is named."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from gateway_core.auth import TokenHasher, key_path_for, load_or_create_key
from gateway_core.config import Settings
from gateway_core.gateway import Gateway
from gateway_core.orchestrator.client import OrchestratorClient
from gateway_core.orchestrator.embedded import EmbeddedOrchestrator
from gateway_core.server import GatewayServer, HttpServer
from gateway_core.store import SQLiteStore


@dataclass
class Runtime:
    gateway: Gateway
    servers: list[HttpServer]
    orchestrator: EmbeddedOrchestrator | None
    orchestrator_url: str
    notes: list[str] = field(default_factory=list)

    @property
    def gateway_server(self) -> HttpServer:
        return self.servers[0]

    async def start(self) -> None:
        if self.orchestrator is not None:
            await self.orchestrator.start()
        await self.gateway.start()

    async def aclose(self) -> None:
        if self.orchestrator is not None:
            await self.orchestrator.aclose()
        await self.gateway.aclose()  # flushes the ledger, then closes the store


async def open_runtime(settings: Settings, orchestrator_port: int = 9403, **gateway_options: Any) -> Runtime:
    """Binds the ports (OSError if taken) and builds everything; `start()` starts it, the servers serve it."""
    store = await SQLiteStore.open(settings.store_path)
    try:
        hasher = TokenHasher(load_or_create_key(key_path_for(store.path)))
        servers: list[HttpServer] = []
        embedded = None
        external = settings.setting("ORCHESTRATOR_URL")
        if external:
            url = external.rstrip("/")
            client = OrchestratorClient(url, settings.setting("ORCHESTRATOR_TOKEN"),
                                        settings.permission.orchestrator_timeout_seconds)
        else:
            internal_token = secrets.token_urlsafe(32)  # the gateway's own pass to the orchestrator beside it
            embedded = EmbeddedOrchestrator(store, hasher, request_ttl_seconds=settings.permission.request_ttl_seconds,
                                            internal_token=internal_token)
            orchestrator_server = HttpServer(embedded.app(), settings.server.host, orchestrator_port)
            url = f"http://127.0.0.1:{orchestrator_server.port}"
            client = OrchestratorClient(url, internal_token, settings.permission.orchestrator_timeout_seconds)
        gateway = Gateway(settings, store, hasher, orchestrator=client, **gateway_options)
        servers.insert(0, GatewayServer(gateway, settings.server.host, settings.server.port))
        if embedded is not None:
            servers.append(orchestrator_server)
    except BaseException:
        await store.close()
        raise
    return Runtime(gateway, servers, embedded, url if embedded is None else servers[-1].url)
