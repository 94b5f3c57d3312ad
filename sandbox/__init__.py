"""The sandbox: stand-ins for every service the gateway has a handler for and a server could be started for
in-process (Coolify, mem0, GitHub, Cloudflare, n8n), each on loopback with a credential made for the run, and
synthetic agents that call the gateway over HTTP, so `mcp-console --sandbox` shows everything live with nothing
to configure. PostgreSQL and MinIO need servers of their own: their settings are left as they are."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import secrets
import threading
from typing import Any

from pydantic import SecretStr

from gateway_core.auth import TokenHasher
from gateway_core.config import Settings
from gateway_core.server import HttpServer, new_fast_loop
from gateway_core.store import SQLiteStore
from sandbox.agents import MEMORY_USER, ROLES, AgentRole, SyntheticAgent, enrol, run_agent
from sandbox.cloudflare import ACCOUNT_ID, ZONE_ID, FakeCloudflare
from sandbox.cloudflare import API_PREFIX as CLOUDFLARE_PREFIX
from sandbox.coolify import FakeCoolify
from sandbox.github import FakeGitHub
from sandbox.mem0 import MemoryStore, ozean_wrapper
from sandbox.n8n import FakeN8n

SERVICES = ("coolify", "mem0", "github", "cloudflare", "n8n")  # what the sandbox serves
NOT_SERVED = ("postgres", "minio")  # handlers whose backends the sandbox cannot run in-process
MEMORIES_KEPT = 1000  # the agents add memories as they go: the oldest make room
OPS_MEMORIES = ("rotate the deploy key on fridays", "web deploys from trunk once the CI checks pass",
                "the api reads from main-db, a postgres database on main-server",
                "plausible holds the analytics: stopping it loses the day's visits")


class Sandbox:
    """Binds the services' servers at construction; `configure` points the settings at them; `start` serves
    them; `start_agents` enrols the agents and sets them calling.

    The servers and the agents run on a thread of their own with its own event loop, as they would in their own
    processes: their work never queues ahead of a keypress in the console's loop. Each stand-in checks requests
    against its vendor's OpenAPI file (openapi-core loads on that thread, before the stand-ins serve)."""

    not_served = NOT_SERVED  # the console says a line each how to point them at a real server

    def __init__(self, agents: int = 3, calls_per_second: float = 1.0, roles: tuple[AgentRole, ...] = ROLES,
                 seed: int = 7) -> None:
        self.agent_count = agents
        self.calls_per_second = calls_per_second
        self.roles = roles
        self.seed = seed
        self.coolify = FakeCoolify(secrets.token_urlsafe(24), seed=seed, stage_seconds=2.0)
        self.mem0 = MemoryStore(api_key=secrets.token_urlsafe(24), capacity=MEMORIES_KEPT, seed=seed)
        for memory in OPS_MEMORIES:
            self.mem0.add(MEMORY_USER, memory, {"source": "sandbox"})
        self.github = FakeGitHub(f"ghp_{secrets.token_urlsafe(27)}")
        self.cloudflare = FakeCloudflare(secrets.token_urlsafe(30))
        self.n8n = FakeN8n(secrets.token_urlsafe(24))
        apps: dict[str, Any] = {"coolify": self.coolify.app(), "mem0": ozean_wrapper(self.mem0),
                                "github": self.github.app(), "cloudflare": self.cloudflare.app(), "n8n": self.n8n.app()}
        self.servers: dict[str, HttpServer] = {}
        try:
            for name, app in apps.items():
                self.servers[name] = HttpServer(app, "127.0.0.1", 0)
        except OSError:
            self._release()
            raise
        self.coolify_server = self.servers["coolify"]
        self.agents: list[SyntheticAgent] = []
        self._loop = new_fast_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox", daemon=True)
        self._serving: list[concurrent.futures.Future[None]] = []
        self._calling: concurrent.futures.Future[None] | None = None

    def url(self, service: str) -> str:
        """Where the sandbox serves `service`'s API, as its settings name it."""
        root = self.servers[service].url
        return root + CLOUDFLARE_PREFIX if service == "cloudflare" else root

    def configure(self, settings: Settings) -> Settings:
        """`settings` with every sandbox service pointed at its stand-in, by the stand-in's credential."""
        return settings.model_copy(update={
            "coolify_api_url": self.url("coolify"), "coolify_api_token": SecretStr(self.coolify.token),
            "mem0_api_url": self.url("mem0"), "mem0_api_key": SecretStr(self.mem0.api_key or ""),
            "mem0_api_flavor": "ozean",
            "github_api_url": self.url("github"), "github_pat": SecretStr(self.github.token),
            "cloudflare_api_url": self.url("cloudflare"), "cloudflare_api_token": SecretStr(self.cloudflare.token),
            "cloudflare_account_id": ACCOUNT_ID, "cloudflare_zone_id": ZONE_ID,
            "n8n_api_url": self.url("n8n"), "n8n_api_key": SecretStr(self.n8n.api_key), "n8n_webhook_url": None,
        })

    def violations(self) -> dict[str, list[str]]:
        """What each stand-in with a vendor's OpenAPI file was sent that the vendor's API would refuse."""
        return {"coolify": self.coolify.violations, "github": self.github.violations,
                "cloudflare": self.cloudflare.violations, "n8n": self.n8n.violations}

    async def start(self) -> None:
        """Serves the stand-ins on the sandbox's thread, their vendor contracts built there first: otherwise the
        first request to each waits for its contract (openapi-core and the vendor's file), and the gateway's first
        health checks showed that wait, and the console's start beside it, as the stand-ins' latency (0.8 s)."""
        self._thread.start()
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._build_contracts(), self._loop))
        self._serving = [asyncio.run_coroutine_threadsafe(server.serve(), self._loop)
                         for server in self.servers.values()]

    async def _build_contracts(self) -> None:
        for stand_in in (self.coolify, self.github, self.cloudflare, self.n8n):
            stand_in.build_contract()

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
        self._release()
        for serving in self._serving:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(serving), 5)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, 5)
        if not self._loop.is_running():
            self._loop.close()

    def _release(self) -> None:
        for server in self.servers.values():
            server.stop()
