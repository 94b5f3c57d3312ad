"""The gateway's own overhead, measured in one run.

Starts a trivial upstream and the gateway (each its own process, on loopback), then drives the same
calls with wrk three ways: straight to the upstream, as `mcp.execute` through the gateway's whole HTTP
stack (auth, validation, rate limits, permission, cost, ledger on), and as an MCP `tools/call` through
the front door at /mcp (the same pipeline behind Streamable HTTP, stateless, answered as SSE: in the
2025-11-25 era by the door's plain path, in the 2026-07-28 era by the official SDK's transport). The
differences are the gateway's overhead and what MCP adds to it. It keeps calling up to --total calls and
reads the gateway process's memory again, to show that it stays flat, and counts the ledger rows after a
clean stop.

    apt-get install wrk   # the load generator (C, so the client costs the machine little)
    .venv/bin/python bench/gateway_overhead.py [--connections 8] [--seconds 10] [--total 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ports import free_port  # noqa: E402

# -- the two server roles, each run in its own process ---------------------------------------------


def run_upstream(port: int) -> None:
    import uvicorn

    from tests.echo_service import create_echo_upstream

    uvicorn.run(create_echo_upstream(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_gateway(port: int, upstream: str, db: str) -> None:
    from gateway_core.catalog import DEFAULT_CATALOG, Catalog
    from gateway_core.config import load_settings
    from gateway_core.gateway import Gateway
    from gateway_core.server import GatewayServer, run_fast, serve_until_signalled
    from tests.echo_service import ECHO_SPEC, EchoHandler

    async def serve() -> None:
        settings = load_settings(None, store={"path": db},
                                 rate_limit={"per_agent": {"max_requests": 10_000_000, "window_ms": 1000}})
        gateway = await Gateway.open(settings, catalog=Catalog((*DEFAULT_CATALOG, ECHO_SPEC)),
                                     handlers={"echo": EchoHandler(upstream)})
        await gateway.start()
        await serve_until_signalled([GatewayServer(gateway, "127.0.0.1", port)], gateway.aclose)

    run_fast(serve())


# -- the driver ------------------------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "application/json"
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"calls":%%d,"seconds":%%f,"errors":%%d,"p50_ms":%%f,"p99_ms":%%f,"status_errors":%%d,"timeouts":%%d}\\n',
    summary.requests, summary.duration / 1e6, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, e.status, e.timeout))
end
"""


TOOL = "echo_echo"
TOOL_ARGUMENTS = {"message": "x"}
ACCEPT = {"Accept": "application/json, text/event-stream"}
# What a Streamable HTTP client sends with each POST (mcp.md §1), in each era of the protocol. 2025-11-25: no
# initialize first (stateless), answered as SSE. 2026-07-28 (what the SDK's `auto` clients speak): every request
# carries its protocol version and capabilities in `_meta` and names itself in headers; a quick answer is JSON.
MCP_ERAS: dict[str, tuple[dict[str, str], dict[str, object]]] = {
    "2025-11-25": ({**ACCEPT, "MCP-Protocol-Version": "2025-11-25"},
                   {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": TOOL, "arguments": TOOL_ARGUMENTS}}),
    "2026-07-28": ({**ACCEPT, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": TOOL},
                   {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": TOOL, "arguments": TOOL_ARGUMENTS,
                               "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                         "io.modelcontextprotocol/clientCapabilities": {}}}}),
}


def wrk(url: str, body: dict[str, object], token: str | None, seconds: int, connections: int,
        extra_headers: dict[str, str] | None = None) -> dict[str, float]:
    """A closed-loop load from wrk (one thread), so the client costs the machine little."""
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(extra_headers or {})}
    lua_headers = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % {"body": json.dumps(body), "headers": lua_headers})
    try:
        output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url],
                                capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    if result["errors"]:
        raise SystemExit(f"calls failed against {url}: {result}")
    result["calls_per_s"] = result["calls"] / result["seconds"]
    return result


def figures(result: dict[str, float]) -> dict[str, float]:
    return {"calls_per_s": round(result["calls_per_s"]), "p50_ms": round(result["p50_ms"], 3),
            "p99_ms": round(result["p99_ms"], 3)}


async def check_mcp_call(url: str, era: str, token: str) -> None:
    """One call the way wrk sends it, read whole: the load must measure successful tool results, and wrk sees only
    the HTTP status (a tool error is a 200 too)."""
    headers, body = MCP_ERAS[era]
    async with httpx.AsyncClient() as client:
        response = await client.post(url, json=body, headers={"Authorization": f"Bearer {token}", **headers})
    data = ([response.json()] if response.headers.get("content-type", "").startswith("application/json") else
            [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")])
    if response.status_code != 200 or not data or data[-1].get("result", {}).get("isError") is not False:
        raise SystemExit(f"the /mcp call does not succeed: {response.status_code} {response.text[:500]}")


def added(direct: dict[str, float], through: dict[str, float]) -> dict[str, float]:
    return {"p50_ms": round(through["p50_ms"] - direct["p50_ms"], 3),
            "p99_ms": round(through["p99_ms"] - direct["p99_ms"], 3)}


async def bench(args: argparse.Namespace) -> None:
    from gateway_core.auth import TokenHasher, create_agent, key_path_for, load_or_create_key
    from gateway_core.store import SQLiteStore

    if shutil.which("wrk") is None:
        raise SystemExit("this benchmark drives the load with wrk: apt-get install wrk")
    db = Path(tempfile.mkdtemp(prefix="mcp-bench-")) / "bench.db"
    store = await SQLiteStore.open(db)
    agent, token = await create_agent(store, TokenHasher(load_or_create_key(key_path_for(db))), "bench", "bench")
    await store.add_grant(agent.id, "echo", None, None, "bench")
    await store.close()

    upstream_port, gateway_port = free_port(), free_port()
    me = [sys.executable, __file__]
    upstream = subprocess.Popen([*me, "--role", "upstream", "--port", str(upstream_port)])
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    await wait_up(upstream_url + "/health")
    gateway = subprocess.Popen([*me, "--role", "gateway", "--port", str(gateway_port), "--upstream", upstream_url,
                                "--db", str(db)])
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    await wait_up(gateway_url + "/health")
    direct_body = {"message": "x"}
    rpc_body = {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
                "params": {"service": "echo", "operation": "echo", "args": ["x"]}}
    mcp_headers, mcp_body = MCP_ERAS["2025-11-25"]
    modern_headers, modern_body = MCP_ERAS["2026-07-28"]
    echo_url, rpc_url, mcp_url = upstream_url + "/echo", gateway_url + "/mcp/rpc", gateway_url + "/mcp"
    try:
        for era in MCP_ERAS:
            await check_mcp_call(mcp_url, era, token)
        wrk(echo_url, direct_body, None, 2, args.connections)  # warm-up
        warm = wrk(rpc_url, rpc_body, token, 2, args.connections)
        warm_mcp = wrk(mcp_url, mcp_body, token, 2, args.connections, mcp_headers)
        direct = wrk(echo_url, direct_body, None, args.seconds, args.connections)
        through = wrk(rpc_url, rpc_body, token, args.seconds, args.connections)
        through_mcp = wrk(mcp_url, mcp_body, token, args.seconds, args.connections, mcp_headers)
        early_calls = int(warm["calls"] + through["calls"] + warm_mcp["calls"] + through_mcp["calls"])
        memory_early = memory_kib(gateway.pid)
        done = early_calls
        while done < args.total:
            done += int(wrk(rpc_url, rpc_body, token, args.seconds, args.connections)["calls"])
        memory_late = memory_kib(gateway.pid)
        # One client at a time: the latency of a call on its own, without queueing behind others.
        direct_alone = wrk(echo_url, direct_body, None, args.seconds, 1)
        through_alone = wrk(rpc_url, rpc_body, token, args.seconds, 1)
        mcp_alone = wrk(mcp_url, mcp_body, token, args.seconds, 1, mcp_headers)
        modern_alone = wrk(mcp_url, modern_body, token, args.seconds, 1, modern_headers)
        done += int(through_alone["calls"] + mcp_alone["calls"] + modern_alone["calls"])
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
        upstream.terminate()
        upstream.wait(10)
    with sqlite3.connect(db) as connection:
        ledger_rows = connection.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    n = args.connections
    print(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "conditions": {"connections": n, "seconds_per_run": args.seconds, "ledger": "on (SQLite WAL, batched)",
                       "load": "wrk, one thread"},
        f"direct_to_upstream_{n}_clients": figures(direct),
        f"through_gateway_{n}_clients": figures(through),
        f"gateway_added_{n}_clients": added(direct, through),
        f"through_mcp_front_door_{n}_clients": figures(through_mcp),
        f"mcp_added_over_legacy_{n}_clients": added(through, through_mcp),
        "direct_to_upstream_1_client": figures(direct_alone),
        "through_gateway_1_client": figures(through_alone),
        "gateway_added_1_client": added(direct_alone, through_alone),
        "through_mcp_front_door_1_client": figures(mcp_alone),
        "mcp_added_over_legacy_1_client": added(through_alone, mcp_alone),
        "through_mcp_front_door_2026_era_1_client": figures(modern_alone),
        "mcp_2026_era_added_over_legacy_1_client": added(through_alone, modern_alone),
        "gateway_memory_kib": {f"rss_after_{early_calls}_calls": memory_early["VmRSS"],
                               f"rss_after_{done}_calls": memory_late["VmRSS"], "peak": memory_late["VmHWM"]},
        "gateway_calls": done,
        "ledger_rows_after_stop": ledger_rows,
    }, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["driver", "upstream", "gateway"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured run (default 10)")
    parser.add_argument("--total", type=int, default=100_000, help="gateway calls before memory is read again")
    args = parser.parse_args()
    if args.role == "upstream":
        run_upstream(args.port)
    elif args.role == "gateway":
        run_gateway(args.port, args.upstream, args.db)
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
