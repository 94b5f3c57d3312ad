"""Synthetic agents for the sandbox: real HTTP clients of the gateway, each with its own token, calling the
sandbox's services (Coolify, GitHub, Cloudflare, n8n, mem0) on a loop. Each reads what it has grants for; the
deployer and the janitor also make a few writes they hold no grant for, so a new user sees requests pop up, calls
flow across services and costs add up.

The calls name what the sandbox's stand-ins hold (sandbox/__init__.py): the applications `web` and `api`, the
repository `acme/web` and its pull request 2, the zone's `www` record, the ops team's memories. Writes change
state in place (a restart, a review, a comment on a DNS record): however long the sandbox runs, they add nothing
up."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway_core.auth import TokenHasher, create_agent
from gateway_core.store import SQLiteStore
from gateway_core.upstream import UpstreamClient, UpstreamConnectionError, UpstreamTimeoutError

log = logging.getLogger(__name__)

NAME_PREFIX = "sandbox-"
MEMORY_USER = "ops"  # whose memories the agents search and add to (the sandbox's mem0 holds some)
WWW_RECORD = f"{1:032x}"  # the sandbox zone's www record: the first id the Cloudflare stand-in hands out


@dataclass(frozen=True, slots=True)
class Call:
    """One call an agent makes: the service, the operation and its arguments (positional, or by name)."""

    service: str
    operation: str
    args: tuple[Any, ...] | Mapping[str, Any] = ()

    @property
    def arguments(self) -> list[Any] | dict[str, Any]:
        return dict(self.args) if isinstance(self.args, Mapping) else list(self.args)


@dataclass(frozen=True, slots=True)
class AgentRole:
    """What one kind of synthetic agent does: the calls it cycles through and the (service, operation) pairs
    it is granted up front (anything else it calls needs an operator's approval; its own mem0 memories need
    none, the shared "ops" ones a grant)."""

    name: str
    calls: tuple[Call, ...]
    granted: tuple[tuple[str, str], ...]
    wait_for_approval: float = 0.0


def _granted(calls: tuple[Call, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(dict.fromkeys((call.service, call.operation) for call in calls))


WEB = {"owner": "acme", "repo": "web"}
READS = (Call("coolify", "list-applications"), Call("coolify", "get-application", ("web",)),
         Call("coolify", "list-servers"), Call("coolify", "get-version"), Call("coolify", "list-databases"),
         Call("coolify", "get-application-logs", ("api", 20)))
WATCHING = (Call("coolify", "list-applications"), Call("github", "list-prs", WEB),
            Call("mem0", "search", {"query": "deploy key", "user_id": MEMORY_USER}),
            Call("cloudflare", "dns-list"), Call("n8n", "list-executions", {"limit": 5}),
            Call("coolify", "get-application", ("web",)), Call("github", "list-workflow-runs", WEB),
            Call("cloudflare", "get-zone"), Call("n8n", "list-workflows"),
            Call("mem0", "get-context", {"user_id": MEMORY_USER}), Call("github", "list-issues", WEB))
DEPLOYER_READS = (Call("coolify", "list-applications"), Call("github", "get-pr", {**WEB, "pullNumber": 2}),
                  Call("github", "get-checks", {**WEB, "ref": "feature-login"}))
DEPLOYER_NOTE = Call("mem0", "remember", {"content": "web restarted after the login fix", "user_id": MEMORY_USER})
JANITOR_READS = (Call("coolify", "list-services"), Call("n8n", "list-failed-executions"),
                 Call("cloudflare", "dns-get", {"recordId": WWW_RECORD}))
ROLES: tuple[AgentRole, ...] = (
    AgentRole("watcher", WATCHING, granted=_granted(WATCHING)),
    AgentRole("deployer", (*DEPLOYER_READS, Call("coolify", "restart-application", ("web",)), DEPLOYER_NOTE,
                           Call("github", "approve-pr", {**WEB, "pullNumber": 2, "body": "checks pass"})),
              granted=_granted((*DEPLOYER_READS, DEPLOYER_NOTE)), wait_for_approval=60.0),
    AgentRole("janitor", (*JANITOR_READS, Call("coolify", "stop-service", ("plausible",)),
                          Call("cloudflare", "dns-update", {"recordId": WWW_RECORD,
                                                            "updateData": {"comment": "checked by the janitor"}})),
              granted=_granted(JANITOR_READS), wait_for_approval=60.0),
    # Coolify reads only, all granted: what the load benchmarks run many of (bench/console_load.py).
    AgentRole("monitor", READS, granted=_granted(READS)),
)


@dataclass(frozen=True, slots=True)
class SyntheticAgent:
    agent_id: str
    token: str
    role: AgentRole


async def enrol(store: SQLiteStore, hasher: TokenHasher, count: int, roles: tuple[AgentRole, ...] = ROLES,
                ) -> list[SyntheticAgent]:
    """Retires the sandbox agents of earlier runs and adds `count` fresh ones with their grants."""
    for agent in await store.list_agents(include_revoked=False):
        if agent.name.startswith(NAME_PREFIX):
            await store.revoke_agent(agent.id, "sandbox")
    agents = []
    for number, role in zip(range(1, count + 1), itertools.cycle(roles), strict=False):
        agent, token = await create_agent(store, hasher, f"{NAME_PREFIX}{role.name}-{number}", "sandbox")
        for service, operation in role.granted:
            await store.add_grant(agent.id, service, operation, None, "sandbox")
        agents.append(SyntheticAgent(agent.id, token, role))
    return agents


async def run_agent(gateway_url: str, agent: SyntheticAgent, interval_seconds: float, seed: int) -> None:
    """Calls the gateway forever, one call every `interval_seconds` (jittered), the way an agent would."""
    jitter = random.Random(seed)
    client = UpstreamClient(gateway_url, {"Authorization": f"Bearer {agent.token}"}, timeout_seconds=120)
    loop = asyncio.get_running_loop()
    next_call = loop.time() + jitter.uniform(0, interval_seconds)
    try:
        for number, call in enumerate(itertools.cycle(agent.role.calls)):
            # A steady cadence whatever the answers' latency: the load does not ease when the gateway slows.
            await asyncio.sleep(max(0.0, next_call - loop.time()))
            next_call += interval_seconds * jitter.uniform(0.5, 1.5)
            body = {"jsonrpc": "2.0", "id": number, "method": "mcp.execute",
                    "params": {"service": call.service, "operation": call.operation, "args": call.arguments,
                               "options": {"waitForApproval": agent.role.wait_for_approval}}}
            try:
                await client.request("POST", "/mcp/rpc", json_body=body)
            except (UpstreamConnectionError, UpstreamTimeoutError) as exc:
                log.debug("sandbox agent %s: %s", agent.agent_id, exc)
    finally:
        await client.aclose()
