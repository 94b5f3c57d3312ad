"""The sandbox's load from outside the console's process, as real agents and a real Coolify would be:
starts the Coolify-compatible server, prints `{"url", "token"}`, then reads one JSON line
`{"gateway_url", "agents": [{"id", "token"}], "calls_per_second"}` and calls the gateway until killed.
Used by bench/console_load.py."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway_core.server import HttpServer, run_fast
from sandbox.agents import ROLES, SyntheticAgent, run_agent
from sandbox.coolify import FakeCoolify


async def main() -> None:
    coolify = FakeCoolify("bench-coolify-token")
    server = HttpServer(coolify.app(), "127.0.0.1", 0)
    serving = asyncio.create_task(server.serve())
    print(json.dumps({"url": server.url, "token": coolify.token}), flush=True)
    order = json.loads(await asyncio.to_thread(sys.stdin.readline))
    monitor = next(role for role in ROLES if role.name == "monitor")
    agents = [SyntheticAgent(agent["id"], agent["token"], monitor) for agent in order["agents"]]
    interval = len(agents) / order["calls_per_second"]
    await asyncio.gather(serving, *(run_agent(order["gateway_url"], agent, interval, number)
                                    for number, agent in enumerate(agents)))


if __name__ == "__main__":
    run_fast(main())
