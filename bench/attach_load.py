"""Consoles attached to a gateway under load: what each operator feels, what the gateway adds, and whether
every call reaches every console across a forced reconnect.

Runs the gateway as `mcp-console serve` (its own process, SQLite ledger, our orchestrator), with the
sandbox's Coolify-compatible server and its read-only "monitor" agents (granted, so no call waits on a
human) in another process (bench/sandbox_load.py). Each console is `mcp-console attach`'s console,
`ConsoleApp(remote=RemoteGateway(...))`, headless at 120x40 on uvloop, in a process of its own, as each
operator's console would be on their own machine: consoles sharing one process would queue each other's
drawing behind their keys, which no operator sees. Each reaches the gateway through its own TCP proxy in
this process; halfway through, every proxy cuts its connections at once and refuses new ones for
`--away` seconds (a network that went away), and each console resumes its stream.

The gateway's added latency is measured as bench/gateway_overhead.py defines it, the same calls straight to
the upstream and through the gateway, here under the load and one call at a time so that the probe never
queues behind itself: `--probes` times a second, this process calls Coolify's `GET /api/v1/projects`
directly, then `mcp.execute coolify list-projects` through the gateway (an operation no agent uses), both
with the aiohttp client the gateway's upstreams use. Added = through minus straight, at p50 and at p95 (a
difference of percentiles, so a p95 can come out below zero when the upstream's tail is the longer one); the
same difference pair by pair is printed too. The probes are part of `--rate`: the agents ask for the rest.

Prints the conditions, then
  - the calls/s achieved and the ledger's rows (those not successful by status and code; killing the load
    process stops Coolify with the agents, so calls in flight then fail, and are counted apart);
  - the gateway's added latency p50 and p95 (and the two runs it is the difference of);
  - per console: key press to screen change (`p` then `h`, every 0.5 s, as bench/console_load.py)
    p50, p95, max (and the max around the cut, while the stream resumes); the call events it received
    against the ledger's rows (read after the gateway has stopped), duplicates (a call id seen twice) and
    missing ids; how often its stream dropped, its reconnect attempts and resyncs (a new snapshot because the
    stream could not resume: 0 expected for a short drop); then OK, or LOST n / DUPLICATED n;
  - the CPU time each process used, and the machine's load average before and after (a shared machine shows).

    .venv/bin/python bench/attach_load.py [--rate 200] [--seconds 60] [--consoles 3] [--agents 20] [--away 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.console_load import percentile, rss_mb  # noqa: E402
from bench.gateway_overhead import free_port, wait_up  # noqa: E402

MCP_CONSOLE = Path(sys.executable).with_name("mcp-console")
UNLIMITED = {"max_requests": 10_000_000, "window_ms": 1000}
QUIET_SECONDS = 1.0  # a console has every event once none has come for this long after the load stopped
SWITCH_TIMEOUT = 10.0  # a switch that takes longer is counted as stuck, not waited for
AFTER_CUT = 2.0  # the switches timed from the cut to this long after the reconnection are shown apart
REPORT_BYTES = 1 << 26  # a console's report is one line holding every call id it received


# -- one attached console, in its own process ------------------------------------------------------------


def say(message: dict[str, Any]) -> None:
    """One JSON line to the driver: on the real stdout, which Textual captures while the app runs."""
    stream = sys.__stdout__
    assert stream is not None
    stream.write(json.dumps(message) + "\n")
    stream.flush()


async def heard_line() -> str:
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


async def switch_latencies(app: Any, stop: asyncio.Event) -> tuple[list[tuple[float, float]], int]:
    """Presses `p` then `h`, a key every quarter second, until `stop`; each key timed from the press to the new
    screen's first paint (as bench/console_load.py). Returns (seconds since the first press, ms) for each
    switch, and how many got stuck."""
    from textual import events

    latencies: list[tuple[float, float]] = []
    stuck = 0
    first = time.perf_counter()
    screens = (("p", app.permissions_screen), ("h", app.dashboard))
    while not stop.is_set():
        for key, screen in screens:
            painted = asyncio.Event()
            pressed = time.perf_counter()
            app.post_message(events.Key(key, key))  # as the terminal driver delivers a key
            try:
                async with asyncio.timeout(SWITCH_TIMEOUT):
                    while app.screen is not screen:
                        await asyncio.sleep(0.001)
                    screen.call_after_refresh(painted.set)  # the new screen's first refresh after the switch
                    await painted.wait()
            except TimeoutError:
                stuck += 1
                continue
            latencies.append((pressed - first, (time.perf_counter() - pressed) * 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    return latencies, stuck


async def attached_console(url: str, token: str, scratch: Path) -> None:
    """The console attached through `url`: says when it is connected, presses keys from "go" to "stop", then
    reports what it measured and every call id it received, once no event has come for a while."""
    from console.app import ConsoleApp
    from gateway_core.config import load_settings
    from gateway_core.events import AttachmentChanged, CallFinished
    from gateway_core.operator_client import RemoteGateway

    settings = load_settings(None, store={"path": scratch / "attached.db"})  # an attached console opens no store
    remote = RemoteGateway(url, token)
    heard = remote.subscribe()  # before connecting: every event the console is handed, and nothing from before
    call_ids: list[str] = []
    drops = 0  # the stream lost while connected
    attempts = 0  # tries to connect again (one drop takes several while the network refuses)
    last_call = time.monotonic()

    async def listen() -> None:
        nonlocal drops, attempts, last_call
        connected = False
        async for event in heard:
            if isinstance(event, CallFinished):
                call_ids.append(event.record.id)
                last_call = time.monotonic()
            elif isinstance(event, AttachmentChanged):
                drops += connected and event.state.status != "connected"
                attempts += event.state.status == "reconnecting"
                connected = event.state.status == "connected"

    app = ConsoleApp(settings, remote=remote)
    async with app.run_test(size=(120, 40)) as pilot:
        listening = asyncio.create_task(listen())
        async with asyncio.timeout(30):
            while remote.attachment.status != "connected":
                await pilot.pause(0.05)
        say({"connected": True})
        if await heard_line() != "go":
            raise SystemExit("the driver went away")
        stop = asyncio.Event()
        stopping = asyncio.create_task(heard_line())
        stopping.add_done_callback(lambda _: stop.set())
        latencies, stuck = await switch_latencies(app, stop)
        await stopping
        async with asyncio.timeout(30):
            while time.monotonic() - last_call < QUIET_SECONDS:
                await asyncio.sleep(0.1)
        listening.cancel()
        report = {"latencies": latencies, "stuck": stuck, "call_ids": call_ids, "calls_seen": app.calls_seen,
                  "dropped": heard.dropped, "drops": drops, "attempts": attempts, "resyncs": remote.resyncs,
                  "rss_mb": rss_mb(), "cpu_seconds": time.process_time()}
    say({"report": report})


def console_role() -> None:
    from gateway_core.server import run_fast

    order = json.loads(sys.stdin.readline())
    run_fast(attached_console(order["url"], order["token"], Path(order["scratch"])))  # on uvloop, as attach runs


# -- the driver ------------------------------------------------------------------------------------------


async def json_line(process: asyncio.subprocess.Process, key: str, within: float) -> Any:
    """The first JSON object with `key` that `process` prints (anything else on its stdout is skipped)."""
    assert process.stdout is not None
    async with asyncio.timeout(within):
        while line := await process.stdout.readline():
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict) and key in message:
                    return message[key]
    raise SystemExit(f"process {process.pid} ended without saying {key!r}")


async def tell(process: asyncio.subprocess.Process, line: str) -> None:
    assert process.stdin is not None
    process.stdin.write((line + "\n").encode())
    await process.stdin.drain()


async def add_operator(db: Path, name: str) -> str:
    """An operator token, as an operator gets one on the gateway's host."""
    cli = await asyncio.create_subprocess_exec(str(MCP_CONSOLE), "operators", "add", name, "--json", "--db",
                                               str(db), stdout=asyncio.subprocess.PIPE)
    output, _ = await cli.communicate()
    if cli.returncode != 0:
        raise SystemExit(f"mcp-console operators add failed ({cli.returncode})")
    token: str = json.loads(output)["token"]
    return token


async def add_agents(db: Path, count: int) -> tuple[list[dict[str, str]], str]:
    """`count` monitor agents with grants for what they call, and the probe's agent, granted list-projects."""
    from gateway_core.auth import create_agent, open_token_hasher
    from gateway_core.store import SQLiteStore
    from sandbox.agents import ROLES, enrol

    store = await SQLiteStore.open(db)
    try:
        hasher = await open_token_hasher(store)
        monitors = tuple(role for role in ROLES if role.name == "monitor")
        agents = await enrol(store, hasher, count, monitors)
        probe, probe_token = await create_agent(store, hasher, "bench-probe", "bench")
        await store.add_grant(probe.id, "coolify", "list-projects", None, "bench")
    finally:
        await store.close()
    return [{"id": agent.agent_id, "token": agent.token} for agent in agents], probe_token


async def probe(coolify: dict[str, str], gateway_url: str, token: str, per_second: float, stop: asyncio.Event,
                ) -> tuple[list[float], list[float], list[str]]:
    """Pairs of the same call, one at a time: straight to Coolify, then through the gateway. Returns both
    times (ms) and what the gateway answered to the calls that did not succeed."""
    from gateway_core.upstream import UpstreamClient

    direct = UpstreamClient(coolify["url"] + "/api/v1", {"Authorization": f"Bearer {coolify['token']}",
                                                         "Accept": "application/json"})
    through = UpstreamClient(gateway_url, {"Authorization": f"Bearer {token}"})
    body = {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
            "params": {"service": "coolify", "operation": "list-projects", "args": []}}
    straight_ms: list[float] = []
    gateway_ms: list[float] = []
    failed: list[str] = []
    loop = asyncio.get_running_loop()
    next_round = loop.time()
    try:
        while not stop.is_set():
            started = time.perf_counter()
            answer = await direct.request("GET", "/projects")
            straight_ms.append((time.perf_counter() - started) * 1000)
            if answer.status != 200:
                raise SystemExit(f"Coolify answered the probe with {answer.status}")
            started = time.perf_counter()
            answer = await through.request("POST", "/mcp/rpc", json_body=body)
            gateway_ms.append((time.perf_counter() - started) * 1000)
            if answer.status != 200 or "result" not in answer.json():
                failed.append(f"HTTP {answer.status}: {answer.text[:200]}")
            next_round += 1 / per_second
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_round - loop.time()))
    finally:
        await direct.aclose()
        await through.aclose()
    return straight_ms, gateway_ms, failed


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stopped(process: asyncio.subprocess.Process, within: float, sig: int | None = signal.SIGTERM,
                  ) -> int | None:
    """Ends `process` (`sig`, or nothing if it ends by itself, then a kill if it is still there after `within`
    s); its exit code."""
    if process.returncode is None:
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), within)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return process.returncode


async def bench(args: argparse.Namespace) -> None:
    from tests.servers import DroppingProxy

    scratch = Path(tempfile.mkdtemp(prefix="mcp-attach-load-"))
    db = scratch / "gateway.db"
    processes: list[asyncio.subprocess.Process] = []
    proxies: list[DroppingProxy] = []
    me = [sys.executable, str(Path(__file__).resolve())]
    exits = contextlib.AsyncExitStack()
    load_before = os.getloadavg()
    try:
        tokens = [await add_operator(db, f"bench-{number}") for number in range(1, args.consoles + 1)]
        agents, probe_token = await add_agents(db, args.agents)

        with (scratch / "load.log").open("w") as log:
            load = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "bench" / "sandbox_load.py"), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log)
        processes.append(load)
        assert load.stdout is not None
        coolify: dict[str, str] = json.loads(await load.stdout.readline())

        gateway_port = free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        environment = {**os.environ, "COOLIFY_API_URL": coolify["url"], "COOLIFY_API_TOKEN": coolify["token"],
                       "MCP_CONSOLE_RATE_LIMIT": json.dumps({"per_agent": UNLIMITED,
                                                             "per_service": {"coolify": UNLIMITED}})}
        with (scratch / "gateway.log").open("w") as log:
            gateway = await asyncio.create_subprocess_exec(
                str(MCP_CONSOLE), "serve", "--db", str(db), "--port", str(gateway_port), "--orchestrator-port",
                str(free_port()), env=environment, stdout=log, stderr=log)
        processes.append(gateway)
        await wait_up(gateway_url + "/health")

        consoles = []
        for number, token in enumerate(tokens, 1):
            proxy = await exits.enter_async_context(DroppingProxy(gateway_port))
            proxies.append(proxy)
            with (scratch / f"console-{number}.log").open("w") as log:
                console = await asyncio.create_subprocess_exec(
                    *me, "--role", "console", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=log, limit=REPORT_BYTES)
            processes.append(console)
            consoles.append(console)
            await tell(console, json.dumps({"url": proxy.url, "token": token, "scratch": str(scratch)}))
        await asyncio.gather(*(json_line(console, "connected", 60) for console in consoles))

        # Everything is up and no call has been made yet: from here each console must see every ledger row.
        agents_rate = args.rate - args.probes
        assert load.stdin is not None
        load.stdin.write((json.dumps({"gateway_url": gateway_url, "calls_per_second": agents_rate,
                                      "agents": agents}) + "\n").encode())
        await load.stdin.drain()
        for console in consoles:
            await tell(console, "go")
        started = time.monotonic()
        probes_stop = asyncio.Event()
        probing = asyncio.create_task(probe(coolify, gateway_url, probe_token, args.probes, probes_stop))
        await asyncio.sleep(args.seconds / 2)
        for proxy in proxies:  # the network goes away under every console at once
            proxy.refusing = True
            proxy.drop()
        dropped_at = time.monotonic() - started
        await asyncio.sleep(args.away)
        for proxy in proxies:
            proxy.refusing = False
        await asyncio.sleep(max(0.0, args.seconds - (time.monotonic() - started)))
        probes_stop.set()
        for console in consoles:
            await tell(console, "stop")
        load_cpu = cpu_seconds(load.pid)
        load_stopped_at = time.time()  # the ledger's clock: calls in flight then lose their Coolify too
        await stopped(load, 5)
        seconds = time.monotonic() - started
        straight_ms, gateway_ms, probe_failures = await probing
        reports = await asyncio.gather(*(json_line(console, "report", 60) for console in consoles))
        for console in consoles:
            await stopped(console, 10, None)  # it ends by itself once it has reported
        gateway_cpu = cpu_seconds(gateway.pid)
        gateway_exit = await stopped(gateway, 15)  # a clean stop writes the ledger's last rows

        with contextlib.closing(sqlite3.connect(db)) as ledger:
            ledger_ids = [row[0] for row in ledger.execute("SELECT id FROM calls")]
            not_successful = ledger.execute(
                "SELECT status, error_code, ts >= ?, COUNT(*) FROM calls WHERE status != 'success' "
                "GROUP BY status, error_code, ts >= ?", (load_stopped_at, load_stopped_at)).fetchall()
            own_ms = [row[0] for row in ledger.execute("SELECT duration_ms FROM calls WHERE status = 'success'")]
    except BaseException:
        for log_file in sorted(scratch.glob("*.log")):  # what the processes said, before the temp dir goes
            print(f"--- the end of {log_file.name}:\n{log_file.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        await exits.aclose()
        for process in processes:
            await stopped(process, 5)
        shutil.rmtree(scratch, ignore_errors=True)

    load_after = os.getloadavg()
    driver_cpu = time.process_time()
    expected = set(ledger_ids)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f} (1 min)")
    print(f"conditions: gateway as `mcp-console serve` in its own process (SQLite ledger, gateway exit code "
          f"{gateway_exit}); {args.agents} sandbox agents asking {agents_rate:g} calls/s + {args.probes:g} probe "
          f"calls/s from other processes for {args.seconds:g} s; {args.consoles} consoles attached, each in its "
          f"own process, headless 120x40, each through its own TCP proxy; every proxy cut at {dropped_at:.1f} s "
          f"and refusing for {args.away:g} s")
    refused = ", ".join(f"{count} {status} ({code}){' as the load process stopped' if at_stop else ''}"
                        for status, code, at_stop, count in not_successful) or "none"
    print(f"calls: {len(ledger_ids) / seconds:,.1f}/s achieved; the ledger holds {len(ledger_ids):,} rows; "
          f"not successful: {refused}")
    added_50 = percentile(gateway_ms, 50) - percentile(straight_ms, 50)
    added_95 = percentile(gateway_ms, 95) - percentile(straight_ms, 95)
    print(f"gateway added latency over {len(gateway_ms)} probe pairs: p50 {added_50:.3f} ms, p95 {added_95:.3f} ms "
          f"(through the gateway p50 {percentile(gateway_ms, 50):.3f} / p95 {percentile(gateway_ms, 95):.3f} ms; "
          f"straight to Coolify p50 {percentile(straight_ms, 50):.3f} / p95 {percentile(straight_ms, 95):.3f} ms; "
          f"{len(probe_failures)} probe calls failed)")
    paired = [through - straight for through, straight in zip(gateway_ms, straight_ms, strict=False)]
    print(f"  the same, pair by pair (each round's through minus its straight): p50 {percentile(paired, 50):.3f} ms, "
          f"p95 {percentile(paired, 95):.3f} ms")
    for failure in sorted(set(probe_failures)):
        print(f"  probe failed: {failure}")
    print(f"  the gateway's own time per successful call (ledger duration_ms, upstream included): "
          f"p50 {percentile(own_ms, 50):.3f} ms, p95 {percentile(own_ms, 95):.3f} ms")
    for number, report in enumerate(reports, 1):
        timed: list[list[float]] = report["latencies"]
        latencies = [latency for _, latency in timed]
        around_cut = [latency for at, latency in timed if dropped_at <= at <= dropped_at + args.away + AFTER_CUT]
        seen = Counter(report["call_ids"])
        duplicated = sum(count - 1 for count in seen.values() if count > 1)
        missing = len(expected - seen.keys())
        unknown = len(seen.keys() - expected)
        print(f"console {number} (operator bench-{number}): key press to screen change over {len(latencies)} "
              f"switches: p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms, "
              f"max {max(latencies):.1f} ms; from the cut to {AFTER_CUT:g} s after the proxies let it back, max "
              f"{max(around_cut, default=float('nan')):.1f} ms" + (
                  f"; {report['stuck']} stuck over {SWITCH_TIMEOUT:g} s" if report["stuck"] else ""))
        print(f"  call events: received {len(report['call_ids']):,} for {len(expected):,} ledger rows (the console "
              f"counted {report['calls_seen']:,}); duplicated {duplicated}, missing {missing}, not in the ledger "
              f"{unknown}, dropped by a full queue {report['dropped']}; stream dropped {report['drops']} time(s), "
              f"{report['attempts']} reconnect attempt(s), {report['resyncs']} resync(s); RSS "
              f"{report['rss_mb']:.1f} MB")
        verdict = [f"LOST {missing}"] if missing else []
        verdict += [f"DUPLICATED {duplicated}"] if duplicated else []
        print("  " + (" ".join(verdict) or "OK"))
    consoles_cpu = ", ".join(f"{report['cpu_seconds']:.1f}" for report in reports)
    print(f"CPU seconds each process used, start to end: gateway {gateway_cpu:.1f}, agents and Coolify "
          f"{load_cpu:.1f}, consoles {consoles_cpu}, this driver (proxies and probes) {driver_cpu:.1f}; "
          f"{os.cpu_count()} CPUs x {seconds:.0f} s = {(os.cpu_count() or 1) * seconds:.0f} available")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["driver", "console"], default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=200.0, help="calls per second in all (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs (default 60)")
    parser.add_argument("--consoles", type=int, default=3, help="consoles attached (default 3)")
    parser.add_argument("--agents", type=int, default=20, help="sandbox agents sharing the load (default 20)")
    parser.add_argument("--away", type=float, default=1.0,
                        help="seconds the proxies refuse connections after the cut (default 1)")
    parser.add_argument("--probes", type=float, default=10.0,
                        help="probe pairs per second timing the gateway's added latency (default 10)")
    args = parser.parse_args()
    if args.role == "console":
        console_role()
        return
    if args.probes >= args.rate:
        parser.error("--probes must be fewer than --rate: the agents make the rest of the calls")
    from gateway_core.server import run_fast

    run_fast(bench(args))


if __name__ == "__main__":
    main()
