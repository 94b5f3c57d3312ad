"""Permission round trips, measured over 200 requests on loopback.

Starts the gateway with our orchestrator beside it (one process, as `mcp-console serve` runs them) and a
trivial upstream; an operator listens on the orchestrator's /ws. For each of N agents: the agent makes
a call that needs permission and waits for approval (options.waitForApproval), and we time
  1. from the agent's call to the request's event at the operator's WebSocket, and
  2. from the operator's respond to the held call's answer.

    .venv/bin/python bench/permission_roundtrip.py [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from gateway_overhead import ROOT, free_port, run_upstream, wait_up  # type: ignore[import-not-found]
from websockets.asyncio.client import connect

sys.path.insert(0, str(ROOT))


def run_linked_gateway(port: int, orchestrator_port: int, upstream: str, db: str) -> None:
    from gateway_core.catalog import DEFAULT_CATALOG, Catalog
    from gateway_core.config import load_settings
    from gateway_core.runtime import open_runtime
    from gateway_core.server import run_fast, serve_until_signalled
    from tests.echo_service import ECHO_SPEC, EchoHandler

    async def serve() -> None:
        settings = load_settings(None, store={"path": db}, server={"port": port},
                                 rate_limit={"per_agent": {"max_requests": 1_000_000, "window_ms": 1000}})
        runtime = await open_runtime(settings, orchestrator_port, catalog=Catalog((*DEFAULT_CATALOG, ECHO_SPEC)),
                                     handlers={"echo": EchoHandler(upstream)})
        await runtime.start()
        await serve_until_signalled(runtime.servers, runtime.aclose)

    run_fast(serve())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def bench(args: argparse.Namespace) -> None:
    from gateway_core.auth import TokenHasher, create_agent, create_operator, key_path_for, load_or_create_key
    from gateway_core.store import SQLiteStore

    db = Path(tempfile.mkdtemp(prefix="mcp-bench-")) / "bench.db"
    store = await SQLiteStore.open(db)
    hasher = TokenHasher(load_or_create_key(key_path_for(db)))
    agents = [await create_agent(store, hasher, f"agent-{n}", "bench") for n in range(args.requests)]
    _, operator_token = await create_operator(store, hasher, "bench-operator", "bench")
    await store.close()

    upstream_port, gateway_port, orchestrator_port = free_port(), free_port(), free_port()
    me = [sys.executable, __file__]
    upstream = subprocess.Popen([*me, "--role", "upstream", "--port", str(upstream_port)])
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    await wait_up(upstream_url + "/health")
    gateway = subprocess.Popen([*me, "--role", "gateway", "--port", str(gateway_port), "--orchestrator-port",
                                str(orchestrator_port), "--upstream", upstream_url, "--db", str(db)])
    gateway_url, orchestrator_url = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{orchestrator_port}"
    await wait_up(gateway_url + "/health")
    await wait_up(orchestrator_url + "/health")
    to_event: list[float] = []
    to_answer: list[float] = []
    try:
        async with connect(f"ws://127.0.0.1:{orchestrator_port}/ws",
                           additional_headers={"Authorization": f"Bearer {operator_token}"}) as feed, \
                httpx.AsyncClient(timeout=60) as client:
            await feed.recv()  # connection_established
            for agent, token in agents:
                body = {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
                        "params": {"service": "echo", "operation": "echo", "args": ["x"],
                                   "options": {"waitForApproval": 30}}}
                started = time.perf_counter()
                held = asyncio.create_task(client.post(gateway_url + "/mcp/rpc", json=body,
                                                       headers={"authorization": f"Bearer {token}"}))
                while True:
                    event = json.loads(await feed.recv())
                    if event["type"] == "mcp_permission_request" and event["agent_id"] == agent.id:
                        break
                to_event.append((time.perf_counter() - started) * 1000)
                responded = time.perf_counter()
                await client.post(orchestrator_url + "/api/mcp/permission-respond",
                                  json={"request_id": event["request_id"], "approved": True},
                                  headers={"Authorization": f"Bearer {operator_token}"})
                answer = await held
                to_answer.append((time.perf_counter() - responded) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"held call {len(to_answer)} failed: {answer.text[:300]}")
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
        upstream.terminate()
        upstream.wait(10)

    def figures(values: list[float]) -> dict[str, float]:
        return {"p50_ms": round(percentile(values, 50), 2), "p99_ms": round(percentile(values, 99), 2),
                "max_ms": round(max(values), 2)}

    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "conditions": {"requests": args.requests, "one at a time": True, "orchestrator": "ours, same process",
                       "store": "SQLite WAL"},
        "agent_call_to_event_at_operator_ws": figures(to_event),
        "respond_to_held_call_answer": figures(to_answer),
    }, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["driver", "upstream", "gateway"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--orchestrator-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=200, help="permission requests to time (default 200)")
    args = parser.parse_args()
    if args.role == "upstream":
        run_upstream(args.port)
    elif args.role == "gateway":
        run_linked_gateway(args.port, args.orchestrator_port, args.upstream, args.db)
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
