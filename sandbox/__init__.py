"""The sandbox: a Coolify-compatible server on loopback and synthetic agents that call the gateway over
HTTP, so `mcp-console --sandbox` shows everything live with nothing to configure."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import threading

from pydantic import SecretStr

from gateway_core.auth import TokenHasher
from gateway_core.config import Settings
from gateway_core.server import HttpServer, new_fast_loop
from gateway_core.store import SQLiteStore
from sandbox.agents import ROLES, AgentRole, SyntheticAgent, enrol, run_agent
from sandbox.coolify import FakeCoolify


class Sandbox:
    """Binds the Coolify server at construction; `configure` points the settings at it; `start` serves it;
    `start_agents` enrols the agents and sets them calling.

    The server and the agents run on a thread of their own with its own event loop, as they would in
    their own processes: their work never queues ahead of a keypress in the console's loop."""

    def __init__(self, agents: int = 3, calls_per_second: float = 1.0, roles: tuple[AgentRole, ...] = ROLES,
                 seed: int = 7) -> None:
        self.agent_count = agents
        self.calls_per_second = calls_per_second
        self.roles = roles
        self.seed = seed
        self.coolify = FakeCoolify(secrets.token_urlsafe(24), seed=seed, stage_seconds=2.0)
        self.coolify_server = HttpServer(self.coolify.app(), "127.0.0.1", 0)
        self.agents: list[SyntheticAgent] = []
        self._loop = new_fast_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox", daemon=True)
        self._serving: concurrent.futures.Future[None] | None = None
        self._calling: concurrent.futures.Future[None] | None = None

    def configure(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"coolify_api_url": self.coolify_server.url,
                                           "coolify_api_token": SecretStr(self.coolify.token)})

    def start(self) -> None:
        self._thread.start()
        self._serving = asyncio.run_coroutine_threadsafe(self.coolify_server.serve(), self._loop)

    async def start_agents(self, store: SQLiteStore, hasher: TokenHasher, gateway_url: str) -> None:
        self.agents = await enrol(store, hasher, self.agent_count, self.roles)  # the store is the caller's
        if self.agents:
            interval = len(self.agents) / self.calls_per_second
            self._calling = asyncio.run_coroutine_threadsafe(self._call(gateway_url, interval), self._loop)

    async def _call(self, gateway_url: str, interval: float) -> None:
        await asyncio.gather(*(run_agent(gateway_url, agent, interval, self.seed + number)
                               for number, agent in enumerate(self.agents)))

    async def stop_agents(self) -> None:
        if self._calling is not None:
            self._calling.cancel()
            with contextlib.suppress(asyncio.CancelledError, concurrent.futures.CancelledError):
                await asyncio.wrap_future(self._calling)
            self._calling = None

    async def aclose(self) -> None:
        await self.stop_agents()
        self.coolify_server.stop()
        if self._serving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(self._serving), 5)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 5)
        if not self._loop.is_running():
            self._loop.close()
