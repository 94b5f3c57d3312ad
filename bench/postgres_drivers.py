"""asyncpg against psycopg 3 on the postgres handler's path, per query, on this machine.

Starts a private PostgreSQL cluster (tests/postgres_cluster.py: Debian's package, as the postgres user when
run as root), fills a table of 1,000 mixed rows, and times, one connection per driver, one query at a time:

  select-1      `SELECT 1`, fetched (the floor: one round trip)
  gateway-100   what the handler does for `query`: BEGIN READ ONLY + SET LOCAL statement_timeout and
                lock_timeout, the statement on the extended protocol, 101 rows through a cursor (a portal
                with a row limit), ROLLBACK
  gateway-1000  the same, 1,001 rows (the max_rows cap)

For psycopg the cursor is a named (server-side) cursor: DECLARE ... / FETCH, the only way it reads a capped
number of rows without the whole result crossing the wire; its client-side cursor is timed too, for scale.
Each figure: wall time per query (median and p99 of --queries) and the client's CPU per query.

    .venv/bin/pip install 'psycopg[binary]'   # only the bench needs it
    .venv/bin/python bench/postgres_drivers.py [--queries 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres_cluster import running_cluster  # noqa: E402

SETUP = """
CREATE TABLE sample (id bigint PRIMARY KEY, price numeric(10,2), name text, created_at timestamptz,
                     attributes jsonb, tags int[]);
INSERT INTO sample SELECT i, i * 1.25, 'item ' || i, now() - i * interval '1 minute',
                          jsonb_build_object('n', i, 'odd', i % 2 = 1), ARRAY[i, i + 1]
FROM generate_series(1, 1000) AS i;
ANALYZE sample;
"""
PREAMBLE = "BEGIN READ ONLY; SET LOCAL statement_timeout = 10000; SET LOCAL lock_timeout = 1000"
ROWS_SQL = "SELECT id, price, name, created_at, attributes, tags FROM sample WHERE id > $1 ORDER BY id"

Query = Callable[[], Awaitable[int]]


async def measure(query: Query, count: int) -> tuple[float, float, float]:
    """Median and p99 wall ms per query, and client CPU ms per query."""
    for _ in range(min(200, count)):  # warm: caches, prepared statements, the server's plans
        await query()
    walls: list[float] = []
    cpu_started = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        await query()
        walls.append((time.perf_counter() - started) * 1000)
    cpu = (time.process_time() - cpu_started) * 1000 / count
    walls.sort()
    return statistics.median(walls), walls[int(len(walls) * 0.99) - 1], cpu


async def asyncpg_queries(url: str) -> dict[str, Query]:
    import asyncpg

    connection = await asyncpg.connect(url)

    async def select_one() -> int:
        return len(await connection.fetch("SELECT 1"))

    def gateway_read(limit: int) -> Query:
        async def run() -> int:
            await connection.execute(PREAMBLE)
            try:
                statement = await connection.prepare(ROWS_SQL)
                rows = []
                async for row in statement.cursor(0, prefetch=limit + 1):
                    rows.append(row)
                    if len(rows) > limit:
                        break
                return len(rows)
            finally:
                await connection.execute("ROLLBACK")
        return run

    return {"select-1": select_one, "gateway-100": gateway_read(100), "gateway-1000": gateway_read(1000)}


async def psycopg_queries(url: str) -> dict[str, Query]:
    import psycopg

    connection = await psycopg.AsyncConnection.connect(url, autocommit=True)

    async def select_one() -> int:
        cursor = await connection.execute("SELECT 1")
        return len(await cursor.fetchall())

    def gateway_read(limit: int, server_side: bool) -> Query:
        sql = ROWS_SQL.replace("$1", "%s")

        async def run() -> int:
            await connection.execute(PREAMBLE)
            try:
                if server_side:
                    async with connection.cursor(name="capped") as cursor:
                        await cursor.execute(sql, (0,))
                        return len(await cursor.fetchmany(limit + 1))
                cursor = await connection.execute(sql, (0,))
                return len(await cursor.fetchmany(limit + 1))  # the whole result has crossed the wire already
            finally:
                await connection.execute("ROLLBACK")
        return run

    return {"select-1": select_one, "gateway-100": gateway_read(100, True), "gateway-1000": gateway_read(1000, True),
            "gateway-100 (client-side cursor)": gateway_read(100, False),
            "gateway-1000 (client-side cursor)": gateway_read(1000, False)}


async def main(count: int) -> None:
    try:
        import psycopg
    except ImportError:
        raise SystemExit("psycopg is not installed: .venv/bin/pip install 'psycopg[binary]'") from None
    import asyncpg

    with running_cluster() as cluster:
        url = cluster.url("postgres")
        setup = await asyncpg.connect(url)
        await setup.execute(SETUP)
        server = await setup.fetchval("SHOW server_version")
        await setup.close()
        print(f"PostgreSQL {server} on 127.0.0.1 (TCP, scram-sha-256), Python {platform.python_version()}, "
              f"{platform.machine()}, {platform.node()}; asyncpg {asyncpg.__version__}, psycopg {psycopg.__version__} "
              f"({psycopg.pq.__impl__} libpq wrapper); {count} queries each, one at a time, one connection")
        print(f"{'query':<36} {'driver':<8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/query':>13}")
        for driver, factory in (("asyncpg", asyncpg_queries), ("psycopg", psycopg_queries)):
            for name, query in (await factory(url)).items():
                p50, p99, cpu = await measure(query, count)
                print(f"{name:<36} {driver:<8} {p50:>8.3f} {p99:>8.3f} {cpu:>13.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    asyncio.run(main(parser.parse_args().queries))
