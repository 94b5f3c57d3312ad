"""Real servers on 127.0.0.1 for tests: any ASGI app under uvicorn, and our gateway."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import uvicorn

from gateway_core.auth import create_agent, create_operator
from gateway_core.catalog import DEFAULT_CATALOG, Catalog, ServiceSpec
from gateway_core.clock import Clock, system_clock
from gateway_core.config import load_settings
from gateway_core.gateway import Gateway
from gateway_core.handlers import ServiceHandler
from gateway_core.runtime import Runtime, open_runtime
from gateway_core.server import GatewayServer
from tests.echo_service import ECHO_SPEC, EchoHandler, create_echo_upstream


@contextlib.asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serves `app` on a free loopback port; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class RunningGateway:
    gateway: Gateway
    url: str

    async def add_agent(self, name: str = "test-agent", agent_id: str | None = None) -> tuple[str, str]:
        agent, token = await create_agent(self.gateway.store, self.gateway.hasher, name, "test", agent_id)
        await self.gateway.authenticator.refresh()
        return agent.id, token

    async def grant(self, agent_id: str, service: str, operation: str | None = None) -> None:
        await self.gateway.store.add_grant(agent_id, service, operation, None, "test")
        policy_refresh = getattr(self.gateway.permissions.policy, "refresh", None)
        if policy_refresh is not None:
            await policy_refresh()


@contextlib.asynccontextmanager
async def run_gateway(
    db_path: Path,
    extra_specs: tuple[ServiceSpec, ...] = (ECHO_SPEC,),
    handler_classes: dict[str, type[ServiceHandler]] | None = None,
    handlers: dict[str, ServiceHandler] | None = None,
    clock: Clock = system_clock,
    **settings: Any,
) -> AsyncIterator[RunningGateway]:
    """Our gateway with the echo service (and any `extra_specs`) beside the default catalog, on a
    free loopback port. Every spec named "echo*" is served by the echo handler, the others by `handlers`."""
    async with serve_asgi(create_echo_upstream()) as upstream_url:
        settings.setdefault("store", {"path": db_path})
        gateway = await Gateway.open(
            load_settings(None, **settings), clock,
            catalog=Catalog((*DEFAULT_CATALOG, *extra_specs)),
            handlers={**{spec.name: EchoHandler(upstream_url) for spec in extra_specs if spec.name.startswith("echo")},
                      **(handlers or {})},
            handler_classes=handler_classes,
        )
        await gateway.start()
        server = GatewayServer(gateway, "127.0.0.1", 0)
        task = asyncio.create_task(server.serve())
        await server.wait_started()
        try:
            yield RunningGateway(gateway, server.url)
        finally:
            server.stop()
            await task
            await gateway.aclose()


@contextlib.asynccontextmanager
async def service_gateway(db_path: Path, service: str, agent: tuple[str, str] | None = None,
                          **run_options: Any) -> AsyncIterator[tuple[RunningGateway, str]]:
    """A gateway for one service's tests (`run_gateway` without the echo service), and the token of an agent
    (`agent`: its name and id) granted the whole service."""
    async with run_gateway(db_path, extra_specs=(), **run_options) as gateway:
        agent_id, token = await gateway.add_agent(*(agent or ()))
        await gateway.grant(agent_id, service)
        yield gateway, token


def unexpected(data: Any) -> NoReturn:
    """For a check written as `condition or unexpected(data)`: fails, showing what came."""
    raise AssertionError(f"unexpected result: {data}")


@dataclass
class LinkedGateway:
    """Our gateway with its orchestrator (ours, or the one at `orchestrator_url`), as `serve` runs them."""

    runtime: Runtime
    url: str
    orchestrator_url: str
    operator_token: str | None

    @property
    def gateway(self) -> Gateway:
        return self.runtime.gateway

    async def add_agent(self, name: str = "test-agent", agent_id: str | None = None) -> tuple[str, str]:
        agent, token = await create_agent(self.gateway.store, self.gateway.hasher, name, "test", agent_id)
        await self.gateway.authenticator.refresh()
        return agent.id, token


@contextlib.asynccontextmanager
async def run_linked(db_path: Path, extra_specs: tuple[ServiceSpec, ...] = (ECHO_SPEC,),
                     wait_for_link: bool = True, **settings: Any) -> AsyncIterator[LinkedGateway]:
    async with serve_asgi(create_echo_upstream()) as upstream_url:
        settings.setdefault("store", {"path": db_path})
        settings.setdefault("server", {"port": 0})
        runtime = await open_runtime(
            load_settings(None, **settings), orchestrator_port=0,
            catalog=Catalog((*DEFAULT_CATALOG, *extra_specs)),
            handlers={spec.name: EchoHandler(upstream_url) for spec in extra_specs if spec.name.startswith("echo")},
        )
        operator_token = None
        if runtime.orchestrator is not None:
            _, operator_token = await create_operator(runtime.gateway.store, runtime.gateway.hasher, "alice", "test")
        await runtime.start()
        tasks = [asyncio.create_task(server.serve()) for server in runtime.servers]
        for server in runtime.servers:
            await server.wait_started()
        try:
            async with asyncio.timeout(5):
                while wait_for_link and (runtime.gateway.link_state is None
                                         or runtime.gateway.link_state.status != "connected"):
                    await asyncio.sleep(0.01)
            yield LinkedGateway(runtime, runtime.gateway_url or "", runtime.orchestrator_url, operator_token)
        finally:
            for server in runtime.servers:
                server.stop()
            await asyncio.gather(*tasks)
            await runtime.aclose()


class DroppingProxy:
    """A TCP proxy on a free loopback port in front of `target_port`: `drop()` cuts every connection through
    it at once (a network that went away), and new connections get through again."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""
        self.refusing = False  # while set, connections are closed as soon as they are made

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        await self._server.wait_closed()

    def drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers |= {client_writer, upstream_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        self._writers -= {client_writer, upstream_writer}
