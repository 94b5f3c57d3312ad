"""Synthetic agents for the sandbox: real HTTP clients of the gateway, each with its own token, calling
Coolify on a loop. Some hold grants for what they do; others need an operator's permission, so a new
user sees requests pop up, calls flow and costs add up."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from dataclasses import dataclass
from typing import Any

from gateway_core.auth import TokenHasher, create_agent
from gateway_core.store import SQLiteStore
from gateway_core.upstream import UpstreamClient, UpstreamConnectionError, UpstreamTimeoutError

log = logging.getLogger(__name__)

NAME_PREFIX = "sandbox-"


@dataclass(frozen=True, slots=True)
class Call:
    operation: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentRole:
    """What one kind of synthetic agent does: the calls it cycles through and the operations it is
    granted up front (anything else it calls needs an operator's approval)."""

    name: str
    calls: tuple[Call, ...]
    granted: tuple[str, ...]
    wait_for_approval: float = 0.0


READS = (Call("list-applications"), Call("get-application", ("web",)), Call("list-servers"),
         Call("get-version"), Call("list-databases"), Call("get-application-logs", ("api", 20)))
ROLES: tuple[AgentRole, ...] = (
    AgentRole("monitor", READS, granted=tuple(call.operation for call in READS)),
    AgentRole("deployer", (Call("list-applications"), Call("restart-application", ("web",))),
              granted=("list-applications",), wait_for_approval=60.0),
    AgentRole("janitor", (Call("list-services"), Call("stop-service", ("plausible",))),
              granted=("list-services",), wait_for_approval=60.0),
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
        for operation in role.granted:
            await store.add_grant(agent.id, "coolify", operation, None, "sandbox")
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
                    "params": {"service": "coolify", "operation": call.operation, "args": list(call.args),
                               "options": {"waitForApproval": agent.role.wait_for_approval}}}
            try:
                await client.request("POST", "/mcp/rpc", json_body=body)
            except (UpstreamConnectionError, UpstreamTimeoutError) as exc:
                log.debug("sandbox agent %s: %s", agent.agent_id, exc)
    finally:
        await client.aclose()

