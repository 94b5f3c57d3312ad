"""The sandbox: a Coolify-compatible server on loopback and synthetic agents that call the gateway over
HTTP, so `mcp-console --sandbox` shows everything live with nothing to configure."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from pydantic import SecretStr

from gateway_core.auth import TokenHasher
from gateway_core.config import Settings
from gateway_core.server import HttpServer
from gateway_core.store import SQLiteStore
from sandbox.agents import ROLES, AgentRole, SyntheticAgent, enrol, run_agent
from sandbox.coolify import FakeCoolify


class Sandbox:
    """Binds the Coolify server at construction; `configure` points the settings at it; `start_agents`
    enrols the agents and sets them calling."""

    def __init__(self, agents: int = 3, calls_per_second: float = 1.0, roles: tuple[AgentRole, ...] = ROLES,
                 seed: int = 7) -> None:
        self.agent_count = agents
        self.calls_per_second = calls_per_second
        self.roles = roles
        self.seed = seed
        self.coolify = FakeCoolify(secrets.token_urlsafe(24), seed=seed, stage_seconds=2.0)
        self.coolify_server = HttpServer(self.coolify.app(), "127.0.0.1", 0)
        self.agents: list[SyntheticAgent] = []
        self._tasks: list[asyncio.Task[None]] = []

    def configure(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"coolify_api_url": self.coolify_server.url,
                                           "coolify_api_token": SecretStr(self.coolify.token)})

    async def start_agents(self, store: SQLiteStore, hasher: TokenHasher, gateway_url: str) -> None:
        self.agents = await enrol(store, hasher, self.agent_count, self.roles)
        interval = len(self.agents) / self.calls_per_second if self.agents else 0
        self._tasks = [asyncio.create_task(run_agent(gateway_url, agent, interval, self.seed + number),
                                           name=f"sandbox-agent-{number}")
                       for number, agent in enumerate(self.agents)]

    async def stop_agents(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def aclose(self) -> None:
        await self.stop_agents()
        self.coolify_server.stop()
