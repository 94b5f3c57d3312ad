"""The data-store services through the gateway beside the same operation straight with the client library, in
one run: `postgres.query` (a 1-row and a 1,000-row SELECT) and `minio.stat`.

Starts a private PostgreSQL cluster (tests/postgres_cluster.py) with a database "kids-ascension" holding a table of
10,000 mixed rows, read by a SELECT-only role (pg_read_all_data, as the README advises), and moto's S3 server
(tests/s3_server.py) with one object of 4 KiB and its metadata (moto answers each request with `Connection: close`,
so every stat on either route opens a new TCP connection). The gateway runs as `mcp-console serve` in its own
process (SQLite ledger, our orchestrator, the agent's grants in the store, rate limits lifted), pointed at both by
POSTGRES_KA_URL and MINIO_ENDPOINT / MINIO_ACCESS_KEY / MINIO_SECRET_KEY. This process is the client of all of
them, on uvloop as the gateway is.

Each route, one call at a time:
  straight   postgres: asyncpg doing what the handler does for `query`: a pool with the handler's settings and
             codecs, a connection acquired and released per call, BEGIN READ ONLY + SET LOCAL statement_timeout
             and lock_timeout, the statement prepared, its rows (as asyncpg Records) read through a portal up to
             limit + 1, ROLLBACK. The rows' JSON form is not made: that is part of what the gateway adds.
             minio: the `minio` client's stat_object, called directly (a blocking call, the library's own way).
  as JSON    postgres: straight, then `query`'s answer made of those records by the handler's own function (the
             values as agents read them, `fields`, the 1 MiB cap, `truncated`), encoded as the gateway encodes it
             and decoded as the through route decodes it: the same answer carried as JSON, without the gateway.
  reference  postgres: the same SELECT as `pool.fetch` (no transaction, asyncpg's statement cache: the floor).
             minio: stat_object in asyncio.to_thread, the worker-thread hop the handler makes.
  through    `mcp.execute` on /mcp/rpc with aiohttp on one keep-alive connection, the answer read and
             JSON-decoded (as an agent reads it), its row count or size checked.
The routes take turns in blocks of 100 calls, so that a busy moment of this shared machine falls on all of them,
after --warm-up untimed calls each. calls/s is calls over the time spent in them (one at a time: 1 / the mean);
p50, p95 and p99 are of the single calls; added = through minus straight, of each percentile, and for postgres also
through minus "as JSON": what the gateway adds to the same answer, the figure held to 1 ms (at 1,000 rows carrying
the answer as JSON, made, encoded and decoded, takes more than that by itself, on any route). The gateway's CPU per
call is read from /proc around the through calls. PostgreSQL (initdb/pg_ctl) and moto[server] must be installed.

    .venv/bin/python bench/services.py [--calls 300] [--warm-up 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import io
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.console_load import percentile  # noqa: E402
from bench.gateway_overhead import wait_up  # noqa: E402
from tests.ports import free_port  # noqa: E402

if TYPE_CHECKING:
    import aiohttp
    import asyncpg
    from minio import Minio

    from tests.postgres_cluster import PostgresCluster
    from tests.s3_server import S3Server

MCP_CONSOLE = Path(sys.executable).with_name("mcp-console")
UNLIMITED = {"max_requests": 10_000_000, "window_ms": 1000}
WARM_UP = 200  # default calls per route before any is timed: pools filled, plans cached, the gateway's first calls
BLOCK = 100  # calls per path per turn
DATABASE = "kids-ascension"  # the spec's database the gateway knows by POSTGRES_KA_URL
READER, READER_PASSWORD = "bench_reader", "bench-reader-pw"
TABLE_ROWS = 10_000
SETUP = f"""
CREATE TABLE sample (id bigint PRIMARY KEY, price numeric(10,2), name text, created_at timestamptz,
                     attributes jsonb, tags int[]);
INSERT INTO sample SELECT i, i * 1.25, 'item ' || i, timestamptz '2026-11-01 00:00+00' - i * interval '1 minute',
                          jsonb_build_object('n', i, 'odd', i % 2 = 1), ARRAY[i, i + 1]
FROM generate_series(1, {TABLE_ROWS}) AS i;
ANALYZE sample;
"""
ONE_ROW_SQL = "SELECT id, price, name, created_at, attributes, tags FROM sample WHERE id = $1"
MANY_ROWS_SQL = "SELECT id, price, name, created_at, attributes, tags FROM sample WHERE id <= $1 ORDER BY id"
BUCKET, OBJECT_KEY = "media", "docs/report.pdf"
OBJECT_BODY = b"%PDF-1.4 " + b"x" * 4087  # 4 KiB

Call = Callable[[], Awaitable[None]]
PERCENTILES = (50, 95, 99)


@dataclass
class Route:
    """One way of doing a case's operation, and the time (ms) each of its timed calls took."""

    label: str
    call: Call
    times_ms: list[float] = field(default_factory=list)

    @property
    def calls_per_second(self) -> float:
        return len(self.times_ms) / (sum(self.times_ms) / 1000)


@dataclass
class Case:
    name: str
    straight: Route
    reference: Route
    through: Route
    as_json: Route | None = None  # straight with the gateway's answer made and carried as JSON
    gateway_cpu_ms: float = 0.0  # the gateway process's CPU per through call

    @property
    def routes(self) -> tuple[Route, ...]:
        return (self.straight, *([self.as_json] if self.as_json else []), self.reference, self.through)

    @property
    def same_answer(self) -> Route:
        """The route whose answer is the through route's: what "added" is held against."""
        return self.as_json or self.straight


# -- the servers -----------------------------------------------------------------------------------


async def fill_database(cluster: PostgresCluster) -> str:
    """The database, its table and the read-only role; the server's version."""
    import asyncpg

    admin = await asyncpg.connect(cluster.url("postgres"))
    try:
        await admin.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'; "
                            f"GRANT pg_read_all_data TO {READER}")
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')  # alone: not inside the transaction of a batch
        version: str = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    owner = await asyncpg.connect(cluster.url(DATABASE))
    try:
        await owner.execute(SETUP)
    finally:
        await owner.close()
    return version


def s3_client(server: S3Server) -> Minio:
    """MinIO's client as the handler builds it: its own urllib3 pool, no retries, the same timeouts."""
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(maxsize=10, retries=False, timeout=urllib3.Timeout(connect=10.0, read=30.0))
    return Minio(server.endpoint, server.access_key, server.secret_key, secure=False, region="us-east-1",
                 http_client=http)


def fill_bucket(client: Minio) -> None:
    client.make_bucket(BUCKET, location="us-east-1")
    client.put_object(BUCKET, OBJECT_KEY, io.BytesIO(OBJECT_BODY), len(OBJECT_BODY), content_type="application/pdf",
                      metadata={"X-Uploaded-By": "bench", "X-Original-Filename": "report.pdf"})


async def add_agent(db: Path) -> str:
    """An agent granted postgres and minio in the gateway's store; its token."""
    from gateway_core.auth import create_agent, open_token_hasher
    from gateway_core.store import SQLiteStore

    store = await SQLiteStore.open(db)
    try:
        agent, token = await create_agent(store, await open_token_hasher(store), "bench-services", "bench")
        for service in ("postgres", "minio"):
            await store.add_grant(agent.id, service, None, None, "bench")
    finally:
        await store.close()
    return token


def gateway_environment(database_url: str, s3: S3Server) -> dict[str, str]:
    """This process's environment without any settings variable of the shell, plus the bench's."""
    from gateway_core.config import settings_environment

    covered = settings_environment()
    environment = {name: value for name, value in os.environ.items() if not covered.covers(name)}
    return {**environment, "POSTGRES_KA_URL": database_url, "MINIO_ENDPOINT": s3.endpoint,
            "MINIO_ACCESS_KEY": s3.access_key, "MINIO_SECRET_KEY": s3.secret_key,
            "MCP_CONSOLE_RATE_LIMIT": json.dumps({"per_agent": UNLIMITED,
                                                  "per_service": {"postgres": UNLIMITED, "minio": UNLIMITED}}),
            "MCP_CONSOLE_HEALTH__INTERVAL_SECONDS": "3600"}  # no health check lands inside the timed calls


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the routes ------------------------------------------------------------------------------------


def postgres_straight(pool: asyncpg.Pool, sql: str, params: list[Any], limit: int, rows: int,
                      as_json: bool = False) -> Call:
    """The handler's steps for `query`, with asyncpg alone; `as_json`: and the answer made and carried as JSON."""
    from gateway_core.handlers.postgres import query_answer
    from gateway_core.json_bytes import json_bytes

    preamble = "BEGIN READ ONLY; SET LOCAL statement_timeout = 10000; SET LOCAL lock_timeout = 1000"

    async def call() -> None:
        async with pool.acquire() as connection:
            await connection.execute(preamble)
            try:
                statement = await connection.prepare(sql)
                attributes = statement.get_attributes()
                records = await (await statement.cursor(*params)).fetch(limit + 1)
            finally:
                await connection.execute("ROLLBACK")
        if as_json:
            data = query_answer(attributes, records, limit)
            answer = json.loads(json_bytes({"jsonrpc": "2.0", "id": 1, "result": {"data": data}}))
            counted = answer["result"]["data"]["rowCount"]
        else:
            counted = len(records[:limit])
        if counted != rows:
            raise SystemExit(f"asyncpg read {counted} rows, not {rows}")

    return call


def postgres_plain(pool: asyncpg.Pool, sql: str, params: list[Any], rows: int) -> Call:
    async def call() -> None:
        records = await pool.fetch(sql, *params)
        if len(records) != rows:
            raise SystemExit(f"asyncpg read {len(records)} rows, not {rows}")

    return call


def through_gateway(session: aiohttp.ClientSession, url: str, token: str, service: str, operation: str,
                    args: dict[str, Any], check: Callable[[dict[str, Any]], bool]) -> Call:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
                       "params": {"service": service, "operation": operation, "args": args}}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def call() -> None:
        async with session.post(url, data=body, headers=headers) as response:
            answer = json.loads(await response.read())
        if response.status != 200 or "result" not in answer or not check(answer["result"]["data"]):
            raise SystemExit(f"the gateway answered {service}.{operation} with HTTP {response.status}: "
                             f"{json.dumps(answer)[:500]}")

    return call


def minio_straight(client: Minio) -> Call:
    async def call() -> None:
        found = client.stat_object(BUCKET, OBJECT_KEY)  # blocks the loop, as any direct use of the client does
        if found.size != len(OBJECT_BODY):
            raise SystemExit(f"stat_object gave size {found.size}")

    return call


def minio_in_thread(client: Minio) -> Call:
    async def call() -> None:
        found = await asyncio.to_thread(client.stat_object, BUCKET, OBJECT_KEY)
        if found.size != len(OBJECT_BODY):
            raise SystemExit(f"stat_object gave size {found.size}")

    return call


async def measure(case: Case, calls: int, warm_up: int, gateway_pid: int) -> None:
    """Warms every route, then times `calls` calls of each, the routes taking turns a block at a time."""
    for route in case.routes:
        for _ in range(warm_up):
            await route.call()
    gateway_cpu = 0.0
    done = 0
    while done < calls:
        block = min(BLOCK, calls - done)
        for route in case.routes:
            cpu_before = cpu_seconds(gateway_pid)
            for _ in range(block):
                started = time.perf_counter()
                await route.call()
                route.times_ms.append((time.perf_counter() - started) * 1000)
            if route is case.through:
                gateway_cpu += cpu_seconds(gateway_pid) - cpu_before
        done += block
    case.gateway_cpu_ms = gateway_cpu * 1000 / calls


def postgres_cases(pool: asyncpg.Pool, session: aiohttp.ClientSession, rpc_url: str, token: str) -> list[Case]:
    cases = []
    for name, sql, params, limit, rows in (("postgres.query, 1 row", ONE_ROW_SQL, [4242], 100, 1),
                                           ("postgres.query, 1,000 rows", MANY_ROWS_SQL, [1000], 1000, 1000)):
        def counted(data: dict[str, Any], rows: int = rows) -> bool:
            return bool(data["rowCount"] == rows and not data["truncated"])

        query = {"database": DATABASE, "sql": sql, "params": params, "limit": limit}
        cases.append(Case(
            name,
            Route("straight: asyncpg, the handler's steps", postgres_straight(pool, sql, params, limit, rows)),
            Route("reference: asyncpg pool.fetch", postgres_plain(pool, sql, params, rows)),
            Route("through the gateway", through_gateway(session, rpc_url, token, "postgres", "query", query,
                                                         counted)),
            Route("as JSON: straight + the answer as JSON",
                  postgres_straight(pool, sql, params, limit, rows, as_json=True))))
    return cases


def minio_case(client: Minio, session: aiohttp.ClientSession, rpc_url: str, token: str) -> Case:
    def sized(data: dict[str, Any]) -> bool:
        return bool(data["size"] == len(OBJECT_BODY))

    return Case(
        "minio.stat",
        Route("straight: minio stat_object", minio_straight(client)),
        Route("reference: stat_object in to_thread", minio_in_thread(client)),
        Route("through the gateway", through_gateway(session, rpc_url, token, "minio", "stat",
                                                     {"bucket": BUCKET, "fileKey": OBJECT_KEY}, sized)))


# -- the run ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def servers() -> Iterator[tuple[PostgresCluster, S3Server]]:
    """PostgreSQL and the S3 server, both stopped (and the cluster's files removed) on the way out."""
    from tests.postgres_cluster import running_cluster
    from tests.s3_server import running_s3

    with running_cluster() as cluster, running_s3() as s3:
        yield cluster, s3


async def stop(process: asyncio.subprocess.Process) -> int | None:
    """SIGTERM (the gateway's clean stop), then SIGKILL if it is still there after 15 s; its exit code."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return process.returncode


@dataclass
class Run:
    cases: list[Case]
    server_version: str
    gateway_exit: int | None


async def run(calls: int, warm_up: int, scratch: Path) -> Run:
    """Everything started, measured and stopped again, the gateway first."""
    import aiohttp
    import asyncpg

    from gateway_core.handlers.postgres_values import SESSION_SETTINGS, prepare_connection

    with servers() as (cluster, s3):
        server_version = await fill_database(cluster)
        client = s3_client(s3)
        fill_bucket(client)
        db = scratch / "gateway.db"
        token = await add_agent(db)
        port = free_port()
        database_url = cluster.url(DATABASE, READER, READER_PASSWORD)
        with (scratch / "gateway.log").open("w") as log:
            gateway = await asyncio.create_subprocess_exec(
                str(MCP_CONSOLE), "serve", "--db", str(db), "--port", str(port), "--orchestrator-port",
                str(free_port()), env=gateway_environment(database_url, s3), stdout=log, stderr=log)
        try:
            await wait_up(f"http://127.0.0.1:{port}/health")
            rpc_url = f"http://127.0.0.1:{port}/mcp/rpc"
            # The handler's pool: its sizes, idle lifetime, session settings and codecs (PoolSettings' defaults,
            # DB_POOL_* unset).
            pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10,
                                             max_inactive_connection_lifetime=10.0, init=prepare_connection,
                                             server_settings={**SESSION_SETTINGS, "application_name": "bench-straight"})
            async with pool, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
                cases = [*postgres_cases(pool, session, rpc_url, token), minio_case(client, session, rpc_url, token)]
                gc.freeze()  # as the gateway does: what set-up built stays out of this client's collections
                for case in cases:
                    await measure(case, calls, warm_up, gateway.pid)
        finally:
            gateway_exit = await stop(gateway)
    return Run(cases, server_version, gateway_exit)


def report(outcome: Run, calls: int, warm_up: int, load_before: float, load_after: float) -> None:
    import aiohttp
    import asyncpg
    import minio
    import moto

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; load average (1 min) before {load_before:.2f}, after "
          f"{load_after:.2f}; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"servers: PostgreSQL {outcome.server_version} (TCP on loopback, scram-sha-256), moto {moto.__version__} "
          f"S3 server; clients: asyncpg {asyncpg.__version__}, minio {minio.__version__}, aiohttp "
          f"{aiohttp.__version__}")
    print(f"conditions: gateway as `mcp-console serve` (own process, SQLite ledger, exit code "
          f"{outcome.gateway_exit}); {calls} timed calls per route, one at a time, routes taking turns every "
          f"{BLOCK}, after {warm_up} warm-up calls each; a table of {TABLE_ROWS:,} rows")
    print(f"{'case':<28} {'route':<42} {'calls/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for case in outcome.cases:
        for number, route in enumerate(case.routes):
            figures = " ".join(f"{percentile(route.times_ms, p):>8.3f}" for p in PERCENTILES)
            print(f"{case.name if number == 0 else '':<28} {route.label:<42} {route.calls_per_second:>8,.0f} "
                  f"{figures}")
        for label, base in (("through - straight", case.straight), ("through - as JSON", case.as_json)):
            if base is None:
                continue
            added = [percentile(case.through.times_ms, p) - percentile(base.times_ms, p) for p in PERCENTILES]
            figures = " ".join(f"{value:>8.3f}" for value in added)
            print(f"{'':<28} {f'added by the gateway ({label})':<42} {'':>8} {figures}")
        held = percentile(case.through.times_ms, 50) - percentile(case.same_answer.times_ms, 50)
        print(f"{'':<28} {'':<42} (added to the same answer, p50: {held:.3f} ms, "
              f"{'within' if held <= 1.0 else 'OVER'} 1 ms; the gateway's CPU {case.gateway_cpu_ms:.3f} ms per call)")


async def bench(calls: int, warm_up: int) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # a kill still cleans up
    load_before = os.getloadavg()[0]
    scratch = Path(tempfile.mkdtemp(prefix="mcp-bench-services-"))
    try:
        outcome = await run(calls, warm_up, scratch)
    except Exception:
        log_file = scratch / "gateway.log"
        if log_file.exists():
            print(f"--- the end of the gateway's log:\n{log_file.read_text(errors='replace')[-3000:]}",
                  file=sys.stderr)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(outcome, calls, warm_up, load_before, os.getloadavg()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300,
                        help="timed calls per route and case (default 300; the routes take turns every "
                             f"{BLOCK} calls)")
    parser.add_argument("--warm-up", type=int, default=WARM_UP, metavar="CALLS",
                        help=f"untimed calls per route and case before the timed ones (default {WARM_UP})")
    args = parser.parse_args()
    if args.calls < 1:
        parser.error("--calls must be at least 1")
    if args.warm_up < 0:
        parser.error("--warm-up cannot be negative")
    from gateway_core.server import run_fast

    try:
        run_fast(bench(args.calls, args.warm_up))
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise SystemExit("interrupted: the gateway, PostgreSQL and the S3 server were stopped") from None


if __name__ == "__main__":
    main()
