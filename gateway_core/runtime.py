"""The gateway and its orchestrator, assembled as `mcp-console serve` (and the console) run them: ours
embedded beside the gateway on the same store, unless an external one is named."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_core.auth import open_token_hasher
from gateway_core.clock import Clock, system_clock
from gateway_core.config import ConfigError, Settings
from gateway_core.gateway import Gateway
from gateway_core.orchestrator.client import OrchestratorClient, OrchestratorUnavailable
from gateway_core.orchestrator.embedded import EmbeddedOrchestrator
from gateway_core.server import GatewayServer, HttpServer
from gateway_core.store import SQLiteStore

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    gateway: Gateway
    gateway_server: HttpServer | None  # None: attached to the orchestrator only (no agents served here)
    orchestrator: EmbeddedOrchestrator | None
    orchestrator_server: HttpServer | None
    orchestrator_url: str
    _closed: bool = field(default=False, init=False)

    @property
    def servers(self) -> list[HttpServer]:
        return [server for server in (self.gateway_server, self.orchestrator_server) if server is not None]

    @property
    def gateway_url(self) -> str | None:
        return self.gateway_server.url if self.gateway_server is not None else None

    async def start(self) -> None:
        if self.orchestrator is not None:
            await self.orchestrator.start()
        await self.gateway.start()

    def stop(self) -> None:
        """Stops taking calls: held calls are answered at once (the gateway is stopping), and the servers
        answer what is in flight, then end their `serve()`."""
        self.gateway.begin_shutdown()
        for server in self.servers:
            server.stop()

    async def aclose(self) -> None:
        """Closes the orchestrator and the gateway (which writes the ledger's last rows, then closes the
        store). Call after `stop()` and after the servers' `serve()` returned; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        if self.orchestrator is not None:
            await self.orchestrator.aclose()
        await self.gateway.aclose()


async def open_runtime(settings: Settings, orchestrator_port: int = 9403, serve_gateway: bool = True,
                       clock: Clock = system_clock, **gateway_options: Any) -> Runtime:
    """Binds the ports (OSError if taken) and builds everything; `start()` starts it, the servers serve it.

    Without `serve_gateway` no agent can reach this gateway: it only follows the orchestrator (ours on
    `orchestrator_port` unless ORCHESTRATOR_URL names another) and runs operators' own calls. `clock` is
    the one clock of everything assembled here (the store hands it on to the gateway and orchestrator).

    ConfigError when `[policy] always_ask` needs one-time approvals that the named orchestrator cannot grant;
    one that cannot be asked at start is warned about, and the calls that need them are refused until it is."""
    store = await SQLiteStore.open(settings.store_path, clock)
    embedded = orchestrator_server = gateway_server = gateway = None
    try:
        hasher = await open_token_hasher(store)
        external = settings.setting("ORCHESTRATOR_URL") or (
            None if serve_gateway else f"http://127.0.0.1:{orchestrator_port}")
        if external:
            url = external.rstrip("/")
            client = OrchestratorClient(url, settings.setting("ORCHESTRATOR_TOKEN"),
                                        settings.permission.orchestrator_timeout_seconds)
        else:
            internal_token = secrets.token_urlsafe(32)  # the gateway's own pass to the orchestrator beside it
            embedded = EmbeddedOrchestrator(store, hasher, request_ttl_seconds=settings.permission.request_ttl_seconds,
                                            internal_token=internal_token,
                                            max_body_bytes=settings.server.max_body_bytes)
            orchestrator_server = HttpServer(embedded.app(), settings.server.host, orchestrator_port)
            url = orchestrator_server.url
            client = OrchestratorClient(url, internal_token, settings.permission.orchestrator_timeout_seconds)
        gateway = Gateway(settings, store, hasher, orchestrator=client, **gateway_options)
        if external and serve_gateway and settings.policy.always_ask:
            await _check_once_can_be_granted(gateway, settings.policy.always_ask)
        if serve_gateway:
            gateway_server = GatewayServer(gateway, settings.server.host, settings.server.port)
    except BaseException:
        if orchestrator_server is not None:
            orchestrator_server.stop()
        if gateway is not None:
            await gateway.aclose()  # closes the client and the store
        else:
            await store.close()
        raise
    return Runtime(gateway, gateway_server, embedded, orchestrator_server, url)


async def _check_once_can_be_granted(gateway: Gateway, always_ask: Sequence[str]) -> None:
    """`always_ask` needs one-time approvals: refuses to start with an orchestrator that cannot grant them."""
    assert gateway.orchestrator is not None
    try:
        capabilities = await gateway.permissions.learn_capabilities()
    except OrchestratorUnavailable as exc:
        log.warning("[policy] always_ask = %s needs one-time approvals, and the orchestrator could not be asked "
                    "whether it grants them (%s): those calls are refused until it answers", always_ask, exc)
        return
    if "once" not in capabilities.scopes:
        raise ConfigError(f"[policy] always_ask = {always_ask} needs one-time approvals, which the orchestrator at "
                          f"{gateway.orchestrator.display_url} cannot grant (it grants whole services only, "
                          "forever): remove always_ask, or link to an orchestrator that grants once (ours)")
