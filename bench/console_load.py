"""The console under load: the sandbox pushes calls through the gateway inside the console while keys are
pressed, and we measure what an operator feels.

Runs the console headless (Textual's run_test, 120x40) with the gateway inside it, on uvloop as
`mcp-console` runs. The sandbox's Coolify-compatible server and its synthetic agents (read-only "monitor"
agents with grants, so no call waits on a human) run by default in another process, as real agents and a
real Coolify would (bench/sandbox_load.py); `--in-process` runs them in the console's process, on the
sandbox's own thread and loop, as `mcp-console --sandbox` does. Prints
  - the calls/s achieved, and the ledger, gateway and console counts (no event may be lost),
  - key press to screen change (`p` then `h`, every 0.5 s): p50, p95, max,
  - the process's memory (RSS) after 10 s and at the end.

    .venv/bin/python bench/console_load.py [--rate 200] [--seconds 60] [--agents 20] [--in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def bench(args: argparse.Namespace) -> None:
    from pydantic import SecretStr
    from textual import events

    from console.app import ConsoleApp
    from gateway_core.config import load_settings
    from sandbox import Sandbox
    from sandbox.agents import ROLES, enrol

    db = Path(tempfile.mkdtemp(prefix="mcp-console-load-")) / "load.db"
    unlimited = {"max_requests": 10_000_000, "window_ms": 1000}
    settings = load_settings(None, store={"path": db}, server={"port": 0},
                             rate_limit={"per_agent": unlimited, "per_service": {"coolify": unlimited}})
    monitors = tuple(role for role in ROLES if role.name == "monitor")
    outside = None
    if args.in_process:
        sandbox: Sandbox | None = Sandbox(agents=args.agents, calls_per_second=args.rate, roles=monitors)
    else:
        sandbox = None
        outside = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sandbox_load.py")], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        assert outside.stdout is not None and outside.stdin is not None
        coolify = json.loads(outside.stdout.readline())
        settings = settings.model_copy(update={"coolify_api_url": coolify["url"],
                                               "coolify_api_token": SecretStr(coolify["token"])})
    app = ConsoleApp(settings, orchestrator_port=0, sandbox=sandbox)
    latencies: list[float] = []
    by_key: dict[str, list[float]] = {"p": [], "h": []}
    async with app.run_test(size=(120, 40)) as pilot:
        while app.runtime is None or (sandbox is not None and not sandbox.agents):
            await pilot.pause(0.05)
        if outside is not None:
            assert outside.stdin is not None
            gateway = app.runtime.gateway
            agents = await enrol(gateway.store, gateway.hasher, args.agents, monitors)
            await gateway.authenticator.refresh()
            outside.stdin.write(json.dumps({"gateway_url": app.runtime.gateway_url, "calls_per_second": args.rate,
                                            "agents": [{"id": a.agent_id, "token": a.token} for a in agents]}) + "\n")
            outside.stdin.flush()
        started = time.monotonic()
        rss_early = None
        screens = [app.permissions_screen, app.dashboard]
        while (elapsed := time.monotonic() - started) < args.seconds:
            for key, screen in zip(("p", "h"), screens, strict=True):
                painted = asyncio.Event()
                pressed = time.perf_counter()
                app.post_message(events.Key(key, key))  # as the terminal driver delivers a key
                while app.screen is not screen:
                    await asyncio.sleep(0.001)
                screen.call_after_refresh(painted.set)  # the new screen's first refresh after the switch
                await painted.wait()
                latencies.append((time.perf_counter() - pressed) * 1000)
                by_key[key].append(latencies[-1])
                await asyncio.sleep(0.25)
            if rss_early is None and elapsed >= 10:
                rss_early = rss_mb()
        seconds = time.monotonic() - started
        if sandbox is not None:
            await sandbox.stop_agents()
        if outside is not None:
            outside.terminate()
            outside.wait(5)
        await pilot.pause(1.0)  # calls in flight finish
        assert app.runtime is not None
        gateway_count = app.runtime.gateway.usage.since_start.calls
        await app.runtime.gateway.recorder.flush()
        seen = app.calls_seen
    with sqlite3.connect(db) as ledger:
        ledger_rows = ledger.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        failed = ledger.execute("SELECT COUNT(*) FROM calls WHERE status != 'success'").fetchone()[0]

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{args.agents} sandbox agents asking for {args.rate} calls/s for {args.seconds} s "
          f"({'in the console process' if args.in_process else 'from another process'}); console 120x40 headless")
    print(f"calls: {gateway_count / seconds:,.0f}/s achieved; gateway counted {gateway_count:,}, console saw "
          f"{seen:,}, ledger holds {ledger_rows:,} ({failed} not successful)")
    print(f"key press to screen change over {len(latencies)} switches: p50 {percentile(latencies, 50):.1f} ms, "
          f"p95 {percentile(latencies, 95):.1f} ms, max {max(latencies):.1f} ms")
    print(f"  to permissions (p): p50 {percentile(by_key['p'], 50):.1f} ms; back to the dashboard (h): p50 "
          f"{percentile(by_key['h'], 50):.1f} ms")
    print(f"memory (RSS): {rss_early or float('nan'):.1f} MB after 10 s, {rss_mb():.1f} MB after {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="calls per second the agents ask for")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--in-process", action="store_true",
                        help="run the sandbox's Coolify and agents in the console's process, as --sandbox does")
    from gateway_core.server import run_fast

    run_fast(bench(parser.parse_args()))  # on uvloop, as `mcp-console` runs


if __name__ == "__main__":
    main()
