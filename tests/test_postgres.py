"""The postgres handler through the gateway over real HTTP, against a private PostgreSQL cluster the test run
starts (tests/postgres_cluster.py): the spec's databases by their names and aliases and one from config, a
read-only boundary the database itself enforces, rows through a cursor, values as agents read them, errors by
SQLSTATE, the extras, the slash shorthands, and the upstream bugs not to repeat."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from gateway_core.clock import system_clock
from gateway_core.config import load_settings, settings_environment
from gateway_core.handlers.postgres import POSTGRES_OPERATIONS, PostgresHandler, highest_placeholder
from gateway_core.handlers.postgres_values import timestamp_text
from tests.agent_client import AgentClient
from tests.ports import free_port
from tests.postgres_cluster import SUPERUSER_PASSWORD, PostgresCluster, postgres_binaries, running_cluster
from tests.servers import RunningGateway, service_gateway

# One cluster and (for the tests that need no settings of their own) one gateway for the module: its tests run in
# the module's event loop.
pytestmark = [pytest.mark.skipif(postgres_binaries() is None, reason="PostgreSQL is not installed "
                                 "(.ci/run installs it: apt-get install -y postgresql)"),
              pytest.mark.asyncio(loop_scope="module")]

READER, READER_PASSWORD = "gateway_reader", "reader-pw-8c1f"  # the SELECT-only role operators should give us
# kids-ascension's owner, who could write: what stops writes there is the read-only transaction alone.
OWNER, OWNER_PASSWORD = "kids_owner", "owner-pw-3a9b"
WRITER, WRITER_PASSWORD = "gateway_writer", "writer-pw-5d2e"

SETUP = {
    "kids-ascension": """
        CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE,
            updated_at timestamptz NOT NULL DEFAULT '2024-05-06 07:08:09.123+00', created_at date DEFAULT '2024-01-02',
            is_deleted boolean DEFAULT false, balance numeric(12, 2), limit_value int, tags text[], scores bigint[],
            profile jsonb, avatar bytea);
        CREATE INDEX users_name ON users (name);
        INSERT INTO users (name, email, balance, limit_value, tags, scores, profile, avatar)
            SELECT 'user ' || i, 'u' || i || '@example.test', i * 1.5, i, ARRAY['a', 'b'], ARRAY[i, 9007199254740993],
                   jsonb_build_object('n', i), '\\x00ff'::bytea FROM generate_series(1, 150) AS i;
        UPDATE users SET name = 'O''Brien' WHERE id = 1;
        CREATE SEQUENCE tickets;
        CREATE SCHEMA "Sales Data";
        CREATE TABLE "Sales Data"."Q1.Report" (region text PRIMARY KEY, total numeric);
        CREATE INDEX users_name ON "Sales Data"."Q1.Report" (total);  -- same name, other schema: joined by OID
        CREATE TABLE locked (id int);
        ANALYZE;
    """,
    "ozean-licht": "CREATE TABLE courses (id int PRIMARY KEY, title text); INSERT INTO courses VALUES (1, 'Atem');",
    "shared-users-db": "CREATE TABLE accounts (id int PRIMARY KEY); INSERT INTO accounts VALUES (7);",
    "analytics": f"""CREATE TABLE events (name text PRIMARY KEY, hits int NOT NULL);
        INSERT INTO events VALUES ('signup', 1); ALTER TABLE events OWNER TO {WRITER};""",
}


@dataclass(frozen=True)
class Cluster:
    server: PostgresCluster

    def url(self, database: str, user: str = READER, password: str = READER_PASSWORD) -> str:
        return self.server.url(database, user, password)


async def _prepare(server: PostgresCluster) -> None:
    admin = await asyncpg.connect(server.url("postgres"))
    await admin.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'; GRANT pg_read_all_data, "
                        f"pg_read_all_stats TO {READER}; CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PASSWORD}'; "
                        f"CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER_PASSWORD}'; GRANT pg_read_all_stats, "
                        f"pg_signal_backend TO {OWNER}; "
                        # A role whose own defaults would write timestamps another way: the gateway's session wins.
                        f"ALTER ROLE {WRITER} SET DateStyle = 'SQL, DMY'; "
                        f"ALTER ROLE {WRITER} SET TimeZone = 'Asia/Kolkata'")
    for database in SETUP:
        await admin.execute(f'CREATE DATABASE "{database}"' + (f" OWNER {OWNER}" if database == "kids-ascension"
                                                               else ""))
    await admin.close()
    for database, sql in SETUP.items():
        owner = (OWNER, OWNER_PASSWORD) if database == "kids-ascension" else ("postgres", SUPERUSER_PASSWORD)
        connection = await asyncpg.connect(server.url(database, *owner))
        await connection.execute(sql)
        await connection.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster() as server:
        asyncio.run(_prepare(server))
        yield Cluster(server)


def postgres_settings(cluster: Cluster, **overrides: Any) -> dict[str, Any]:
    """kids-ascension by URL, ozean-licht by parts, shared-users by URL, analytics (writable) from config."""
    port = cluster.server.port
    settings: dict[str, Any] = {
        "postgres_ka_url": cluster.url("kids-ascension", OWNER, OWNER_PASSWORD),
        "postgres_ol_host": "127.0.0.1", "postgres_ol_port": port, "postgres_ol_user": READER,
        "postgres_ol_password": READER_PASSWORD,
        "postgres_shared_url": cluster.url("shared-users-db"),
        "postgres": {"databases": {"analytics": {"url": cluster.url("analytics", WRITER, WRITER_PASSWORD),
                                                 "aliases": ["an"], "read_only": False, "max_rows": 50}},
                     "lock_timeout_ms": 300},
        "db_query_timeout_ms": 2500,  # a statement over it is cut; the lock-manager queries need headroom on a busy box
        "health": {"interval_seconds": 3600},
        "rate_limit": {"per_agent": {"max_requests": 100_000, "window_ms": 60_000},
                       "per_service": {"postgres": {"max_requests": 100_000, "window_ms": 60_000}}},
    }
    return {**settings, **overrides}


@contextlib.asynccontextmanager
async def postgres_gateway(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[AgentClient, RunningGateway]]:
    async with service_gateway(tmp_path / "gw.db", "postgres", handler_classes={"postgres": PostgresHandler},
                               **settings) as (gateway, token):
        yield AgentClient(gateway.url, token, "postgres"), gateway


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pg(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AgentClient]:
    async with postgres_gateway(tmp_path_factory.mktemp("pg"), **postgres_settings(cluster)) as (client, _):
        yield client



# -- the databases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("database", "table"), [
    ("kids-ascension", "users"), ("kids-ascension-db", "users"), ("ka-db", "users"), ("KA-DB", "users"),
    ("ozean-licht", "courses"), ("ozean-licht-db", "courses"), ("ol-db", "courses"),
    ("shared-users", "accounts"), ("shared-users-db", "accounts"), ("analytics", "events"), ("an", "events")])
async def test_every_database_answers_to_its_name_and_aliases(pg: AgentClient, database: str, table: str) -> None:
    data = await pg.data("list-tables", database=database)
    assert table in [t["name"] for t in data["tables"]] and data["operation"] == "list_tables"
    assert data["database"] == {"ka": "kids-ascension", "ol": "ozean-licht", "an": "analytics"}.get(
        database.lower()[:2], data["database"]) and data["tableCount"] == len(data["tables"])


async def test_the_database_is_required_and_an_unknown_one_is_refused_with_the_names(pg: AgentClient) -> None:
    missing = await pg.error("list-tables")
    assert missing["code"] == -32602 and missing["data"]["errors"][0]["field"] == "database"
    unknown = await pg.error("list-tables", database="nope")
    assert unknown["code"] == -32602 and unknown["data"]["databases"] == [
        "kids-ascension", "ozean-licht", "shared-users", "analytics"]


async def test_databases_from_the_environment_pattern_are_read_and_cleared_between_tests(
        cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_DB_REPORTING_URL", cluster.url("ozean-licht"))
    assert settings_environment().covers("POSTGRES_DB_REPORTING_URL")
    assert set(load_settings(None).postgres.databases) == {"reporting"}
    async with postgres_gateway(tmp_path) as (client, _):  # nothing else configured: the pattern alone suffices
        listed = await client.data("list-databases")
        courses = await client.data("query", ["SELECT title FROM courses"], database="reporting")
    assert listed["databases"] == [{"name": "reporting", "aliases": [], "readOnly": True, "maxRows": 1000,
                                    "reachable": True}]
    assert courses["rows"] == [{"title": "Atem"}]


async def test_not_configured_is_said_and_pools_open_only_when_used(cluster: Cluster, tmp_path: Path) -> None:
    async with postgres_gateway(tmp_path) as (client, _):
        refused = await client.error("list-tables", database="kids-ascension")
    assert refused["code"] == -32001 and refused["data"]["status"] == "not_configured"
    assert "POSTGRES_KA_URL" in refused["message"]
    handler = PostgresHandler.from_settings(load_settings(None, **postgres_settings(cluster)), system_clock)
    assert all(state.pool is None for state in handler._pools.values())  # built without a connection
    assert (await handler.health()).status == "healthy"
    assert all(state.pool is not None for state in handler._pools.values())
    await handler.aclose()


async def test_a_database_that_is_down_degrades_health_and_all_down_is_down(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    closed = f"postgresql://{READER}:{READER_PASSWORD}@127.0.0.1:{port}/x"
    async with postgres_gateway(tmp_path, **postgres_settings(cluster, postgres_shared_url=closed)) as (client, gw):
        report = await gw.gateway.health.check("postgres")
        assert report.status == "degraded" and "shared-users" in report.message
        down = await client.error("test", database="shared-users")
        assert down["code"] == -32001 and down["data"]["database"] == "shared-users"
        assert READER_PASSWORD not in json.dumps(down) and str(port) not in json.dumps(down)
        assert (await client.data("test", database="ka-db"))["status"] == "connected"
        listed = {d["name"]: d["reachable"] for d in (await client.data("list-databases"))["databases"]}
        assert listed == {"kids-ascension": True, "ozean-licht": True, "shared-users": False, "analytics": True}
    async with postgres_gateway(tmp_path, postgres_ka_url=closed) as (client, gw):
        assert (await gw.gateway.health.check("postgres")).status == "down"
        assert gw.gateway.service_status("postgres") == "down"  # upstream stayed "active"
        refused = await client.error("test", database="ka-db")
        assert refused["code"] == -32001


@pytest.mark.parametrize(("url_of", "sqlstate"), [
    (lambda c: c.url("kids-ascension", OWNER, "wrong-password"), "28P01"),
    (lambda c: c.url("no-such-database"), "3D000")])
async def test_refused_credentials_and_missing_databases_are_configuration_errors(
        cluster: Cluster, tmp_path: Path, url_of: Any, sqlstate: str) -> None:
    async with postgres_gateway(tmp_path, **postgres_settings(cluster, postgres_ka_url=url_of(cluster))) as (client, _):
        error = await client.error("test", database="ka-db")
        stats = await client.error("connection-stats", database="ka-db")
    assert error["code"] == -32001 and error["data"]["sqlstate"] == sqlstate and stats["code"] == -32001
    assert "wrong-password" not in json.dumps(error) and OWNER_PASSWORD not in json.dumps(error)


async def test_no_pooled_connection_within_the_connect_timeout_is_a_timeout(cluster: Cluster, tmp_path: Path) -> None:
    settings = postgres_settings(cluster, db_pool_min=1, db_pool_max=1, default_timeout_ms=300,
                                 db_query_timeout_ms=5000)
    async with postgres_gateway(tmp_path, **settings) as (client, _):
        sleeper = asyncio.create_task(client.call("query", ["SELECT pg_sleep(1.5)"], database="ka-db"))
        await asyncio.sleep(0.3)
        waited = await client.error("test", database="ka-db")
        assert (await sleeper).status_code == 200
        stats = await client.data("connection-stats", database="ka-db")
    assert waited["code"] == -32006 and waited["http"] == 504
    assert stats["pool"]["maxConnections"] == 1 and stats["pool"]["connectionErrors"] == 1


# -- the read-only boundary ------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "SELECT updated_at, created_at, is_deleted FROM users WHERE id = 1",
    "SELECT 'DELETE FROM users' AS words -- DROP TABLE users",
    "SELECT limit_value FROM users WHERE id = 1;",
    "SELECT limit_value FROM users WHERE id = 1 -- a trailing comment",
    "/* INSERT */ SELECT limit_value FROM users WHERE id = 1"])
async def test_reads_the_old_keyword_filter_refused_now_run(pg: AgentClient, sql: str) -> None:
    data = await pg.data("query", [sql], database="ka-db")
    assert data["rowCount"] == 1 and data["truncated"] is False


@pytest.mark.parametrize("sql", [
    "DELETE FROM users", "UPDATE users SET name = 'x'", "COPY users FROM STDIN", "SELECT * INTO copied FROM users",
    "SELECT nextval('tickets')", "CREATE TABLE made (id int)", "TRUNCATE users"])
async def test_writes_are_refused_by_the_database_not_by_a_keyword_list(pg: AgentClient, sql: str) -> None:
    error = await pg.error("query", [sql], database="ka-db")
    assert error["code"] == -32009 and error["data"]["sqlstate"] == "25006", error
    assert "read-only for the gateway" in error["message"] and sql not in json.dumps(error)
    assert (await pg.data("query", ["SELECT count(*) AS n FROM users"], database="ka-db"))["rows"] == [{"n": "150"}]


async def test_a_select_only_role_is_refused_by_the_database_too(pg: AgentClient) -> None:
    delete = await pg.error("query", ["DELETE FROM accounts"], database="shared-users")
    assert delete["code"] == -32009 and delete["data"]["sqlstate"] == "25006"


async def test_one_statement_per_call(pg: AgentClient) -> None:
    error = await pg.error("query", ["SELECT 1; DELETE FROM users"], database="ka-db")
    assert error["code"] == -32009 and error["data"]["sqlstate"] == "42601" and "DELETE" not in json.dumps(error)


async def test_sql_over_ten_thousand_characters_is_refused_before_anything(pg: AgentClient) -> None:
    error = await pg.error("query", ["SELECT 1 -- " + "x" * 10_000], database="ka-db")
    assert error["code"] == -32602 and error["data"]["errors"][0]["field"] == "sql"


# -- rows, values, parameters ----------------------------------------------------------------------


async def test_values_come_as_node_postgres_gave_them(pg: AgentClient) -> None:
    data = await pg.data("query", ["SELECT id, name, updated_at, created_at, is_deleted, balance, limit_value, tags, "
                                   "scores, profile, avatar, '1 day 2 hours'::interval AS span, 1.5::float8 AS f, "
                                   "'2024-05-06 07:08:09'::timestamp AS naive, 'p'::\"char\" AS kind, "
                                   "'2024-05-06 07:08:09.000123+00'::timestamptz AS micro, "
                                   "ARRAY['2024-05-06 09:08:09.5+02'::timestamptz, NULL] AS stamps, "
                                   "1 AS twice, now() AS twice, now() AS last, 1 AS last "
                                   "FROM users WHERE id = 2"],
                       database="ka-db")
    assert data["rows"] == [{"id": "2", "name": "user 2", "updated_at": "2024-05-06T07:08:09.123Z",
                             "created_at": "2024-01-02", "is_deleted": False, "balance": "3.00", "limit_value": 2,
                             "tags": ["a", "b"], "scores": ["2", "9007199254740993"], "profile": {"n": 2},
                             "avatar": "\\x00ff", "span": "1 day 02:00:00", "f": 1.5,
                             "naive": "2024-05-06T07:08:09.000Z", "kind": "p",
                             "micro": "2024-05-06T07:08:09.000123Z", "stamps": ["2024-05-06T07:08:09.500Z", None],
                             "twice": data["rows"][0]["twice"], "last": 1}]
    # Of columns sharing a name the last is the row's, converted as its own type.
    assert data["rows"][0]["twice"].endswith("Z")
    fields = {field["name"]: (field["dataType"], field["typeName"]) for field in data["fields"]}
    assert fields["id"] == (20, "int8") and fields["profile"] == (3802, "jsonb") and fields["scores"][1] == "int8[]"


async def test_values_past_the_agents_forms_keep_postgresqls_text(pg: AgentClient) -> None:
    data = await pg.data("query", ["SELECT 'infinity'::timestamptz AS forever, "
                                   "'0044-03-15 12:00+00 BC'::timestamptz AS ides, '12000-01-01'::timestamp AS far, "
                                   "'0044-03-15 BC'::date AS day, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid AS id, "
                                   "ARRAY['2024-01-02'::date] AS days, "
                                   """'{"big": 123456789012345678901234567890, "n": [1.5]}'::jsonb AS doc"""],
                         database="ka-db")
    assert data["rows"] == [{"forever": "infinity", "ides": "0044-03-15 12:00:00+00 BC", "far": "12000-01-01 00:00:00",
                             "day": "0044-03-15 BC", "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                             "days": ["2024-01-02"], "doc": {"big": 123456789012345678901234567890, "n": [1.5]}}]


async def test_records_and_ranges_come_as_text_and_ranges_of_text_values_ask_for_a_cast(pg: AgentClient) -> None:
    data = await pg.data("query", ["SELECT ROW(1::int8, 'a b', '2024-05-06 09:08:09+02'::timestamptz) AS r"],
                         database="ka-db")
    assert data["rows"] == [{"r": '(1,"a b","2024-05-06 07:08:09+00")'}]  # PostgreSQL's text, as node-postgres gave
    error = await pg.error("query", ["SELECT tstzrange('2024-05-06', '2024-05-07') AS during"], database="ka-db")
    assert error["code"] == -32009 and "tstzrange" in error["message"] and "::text" in error["message"]
    cast = await pg.data("query", ["SELECT tstzrange('2024-05-06', '2024-05-07')::text AS during"], database="ka-db")
    assert cast["rows"] == [{"during": '["2024-05-06 00:00:00+00","2024-05-07 00:00:00+00")'}]
    as_parameter = await pg.error("query", ["SELECT upper($1::tstzrange) AS until", "[2024-05-06,2024-05-07)"],
                                  database="ka-db")
    assert as_parameter["code"] == -32009 and "$1::text::tstzrange" in as_parameter["message"]
    as_text = await pg.data("query", ["SELECT upper($1::text::tstzrange) AS until", "[2024-05-06,2024-05-07)"],
                            database="ka-db")
    assert as_text["rows"] == [{"until": "2024-05-07T00:00:00.000Z"}]
    ranges = await pg.data("query", ["SELECT int4range(1, 5) AS a, int4range(NULL, 3, '(]') AS b, "
                                     "int4range(4, 4) AS c"], database="ka-db")
    assert ranges["rows"] == [{"a": "[1,5)", "b": "(,4)", "c": "empty"}]  # PostgreSQL's canonical forms


async def test_timestamps_are_read_in_utc_whatever_the_role_or_a_statement_set(pg: AgentClient) -> None:
    """The writable database's role defaults to another DateStyle and TimeZone, and an agent's SET is committed
    there: every pooled connection still writes ISO in UTC (set at its start, RESET ALL on its release)."""
    await pg.data("execute", ["SET TimeZone = 'America/New_York'"], database="an")
    await pg.data("execute", ["SET DateStyle = 'German'"], database="an")
    for _ in range(4):  # every connection the pool holds
        data = await pg.data("query", ["SELECT '2024-05-06 09:08:09.25+02'::timestamptz AS at, '2024-05-06'::date AS "
                                       "day, current_setting('TimeZone') AS zone"], database="an")
        assert data["rows"] == [{"at": "2024-05-06T07:08:09.250Z", "day": "2024-05-06", "zone": "UTC"}]


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-06 07:08:09+00", "2024-05-06T07:08:09.000Z"), ("2024-05-06 07:08:09.5+00", "2024-05-06T07:08:09.500Z"),
    ("2024-05-06 07:08:09.123+00", "2024-05-06T07:08:09.123Z"),
    ("2024-05-06 07:08:09.000123+00", "2024-05-06T07:08:09.000123Z"),
    ("2024-05-06 07:08:09.12", "2024-05-06T07:08:09.120Z"),  # a timestamp without zone: taken as UTC
    ("2024-05-06 12:38:09.5+05:30", "2024-05-06T07:08:09.500Z"), ("2024-05-06 03:08:09-04", "2024-05-06T07:08:09.000Z"),
    ("-infinity", "-infinity"), ("06.05.2024 07:08:09 UTC", "06.05.2024 07:08:09 UTC")])
async def test_timestamp_text_is_cut_into_to_iso_string_form(text: str, expected: str) -> None:
    assert timestamp_text(text) == expected


async def test_rows_are_capped_through_a_cursor_and_truncated_only_when_rows_were_dropped(pg: AgentClient) -> None:
    default = await pg.data("query", ["SELECT id FROM users ORDER BY id"], database="ka-db")
    assert default["rowCount"] == 100 and default["truncated"] is True and default["rows"][-1] == {"id": "100"}
    exact = await pg.data("query", {"sql": "SELECT id FROM users", "limit": 150}, database="ka-db")
    assert exact["rowCount"] == 150 and exact["truncated"] is False
    by_option = await pg.data("query", ["SELECT id FROM users"], database="ka-db", options={"limit": 149})
    assert by_option["rowCount"] == 149 and by_option["truncated"] is True
    own_limit = await pg.data("query", ["SELECT id FROM users LIMIT 5"], database="ka-db")
    assert own_limit["rowCount"] == 5 and own_limit["truncated"] is False
    capped = await pg.data("query", {"sql": "SELECT generate_series(1, 5000) AS n", "limit": 100_000},
                           database="ka-db")
    assert capped["rowCount"] == 1000 and capped["truncated"] is True  # max_rows
    config_cap = await pg.data("query", {"sql": "SELECT generate_series(1, 60) AS n", "limit": 55}, database="an")
    assert config_cap["rowCount"] == 50 and config_cap["truncated"] is True  # analytics' max_rows


async def test_a_result_over_a_mebibyte_is_cut_and_says_so(pg: AgentClient) -> None:
    data = await pg.data("query", {"sql": "SELECT repeat('x', 4000) AS wide FROM generate_series(1, 1000)",
                                   "limit": 1000}, database="ka-db")
    assert data["truncated"] is True and 200 < data["rowCount"] < 300
    assert len(json.dumps(data["rows"])) <= 1 << 20


@pytest.mark.parametrize("args", [
    ["SELECT name FROM users WHERE id = $1 AND limit_value < $2", 1, "5"],  # HEAD: [sql, p1, p2]
    ["SELECT name FROM users WHERE id = $1 AND limit_value < $2", [1, 5]],  # the admin app: [sql, [p1, p2]]
    {"sql": "SELECT name FROM users WHERE id = $1 AND limit_value < $2", "params": ["1", 5]}])
async def test_parameters_in_both_upstream_forms(pg: AgentClient, args: Any) -> None:
    assert (await pg.data("query", args, database="ka-db"))["rows"] == [{"name": "O'Brien"}]


async def test_a_single_list_parameter_binds_as_an_array_when_the_statement_has_fewer_placeholders(
        pg: AgentClient) -> None:
    data = await pg.data("query", ["SELECT count(*) AS n FROM users WHERE id = ANY($1)", [1, 2, 3]],
                         database="ka-db")
    assert data["rows"] == [{"n": "3"}]
    assert highest_placeholder("SELECT '$9', $2 -- $7\n, $$ $5 $$, \"$8\"") == 2


@pytest.mark.parametrize(("args", "field"), [
    (["SELECT $1::int, $2::int", 1], "params"), (["SELECT $1::int", 1, 2], "params"),
    (["SELECT $1::int", "one"], "params.0"), (["SELECT $1::date", "yesterday-ish"], "params.0")])
async def test_parameters_that_do_not_fit_are_invalid_params(pg: AgentClient, args: Any, field: str) -> None:
    error = await pg.error("query", args, database="ka-db")
    assert error["code"] == -32602 and error["data"]["errors"][0]["field"] == field


# -- errors by SQLSTATE ----------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "code", "sqlstate"), [
    ("SELEC 1", -32009, "42601"), ("SELECT * FROM no_such_table", -32009, "42P01"),
    ("SELECT 1 / 0", -32009, "22012"), ("SELECT 'abc'::int", -32009, "22P02"),
    ("SELECT pg_sleep(3)", -32006, "57014")])
async def test_database_errors_map_by_sqlstate_without_the_sql(pg: AgentClient, sql: str, code: int,
                                                               sqlstate: str) -> None:
    error = await pg.error("query", [sql], database="ka-db")
    assert error["code"] == code and error["data"]["sqlstate"] == sqlstate, error
    assert sql not in json.dumps(error) and set(error["data"]) == {"database", "sqlstate", "position", "hint"}


async def test_the_syntax_error_says_where(pg: AgentClient) -> None:
    error = await pg.error("query", ["SELECT name FROM users WHERE"], database="ka-db")
    assert error["data"]["position"] == 29


async def test_a_lock_held_elsewhere_is_a_conflict_after_the_lock_timeout(pg: AgentClient, cluster: Cluster) -> None:
    holder = await asyncpg.connect(cluster.server.url("kids-ascension"))
    try:
        await holder.execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        error = await pg.error("query", ["SELECT * FROM locked"], database="ka-db")
    finally:
        await holder.close()
    assert error["code"] == -32008 and error["data"]["sqlstate"] == "55P03" and error["http"] == 409


# -- the other operations --------------------------------------------------------------------------


async def test_describe_table_reads_names_as_sql_does_and_joins_indexes_by_oid(pg: AgentClient) -> None:
    users = await pg.data("describe-table", ["users"], database="ka-db")
    assert users["table"] == {"schema": "public", "name": "users", "fullName": "public.users"}
    columns = {column["name"]: column for column in users["columns"]}
    assert columns["id"]["constraints"] == [{"name": "users_pkey", "type": "PRIMARY KEY"}]
    assert columns["email"]["constraints"][0]["type"] == "UNIQUE" and columns["name"]["nullable"] is False
    assert columns["updated_at"]["type"] == "timestamp with time zone" and columns["id"]["position"] == 1
    assert {index["name"] for index in users["indexes"]} == {"users_pkey", "users_email_key", "users_name"}
    assert users["statistics"]["row_count"] == "150" and users["statistics"]["total_size"].endswith(("kB", "bytes"))
    quoted = await pg.data("describe-table", ['"Sales Data"."Q1.Report"'], database="ka-db")
    assert quoted["table"]["fullName"] == "Sales Data.Q1.Report"
    assert [index["definition"] for index in quoted["indexes"] if index["name"] == "users_name"] == [
        'CREATE INDEX users_name ON "Sales Data"."Q1.Report" USING btree (total)']
    by_schema = await pg.data("describe-table", {"table": '"Q1.Report"', "schema": "Sales Data"}, database="ka-db")
    assert [column["name"] for column in by_schema["columns"]] == ["region", "total"]
    missing = await pg.error("describe-table", ["public.nope"], database="ka-db")
    assert missing["code"] == -32007 and missing["data"]["id"] == "public.nope"


async def test_schema_info_connection_stats_and_test(pg: AgentClient, cluster: Cluster) -> None:
    info = await pg.data("schema-introspection", database="ka-db")
    schemas = {schema["schema_name"]: schema for schema in info["schemas"]}
    assert schemas["public"]["table_count"] == 2 and schemas["Sales Data"]["table_count"] == 1
    assert info["database"]["name"] == "kids-ascension" and info["database"]["version"].startswith("PostgreSQL")
    assert info["summary"]["totalTables"] == 3 and int(info["database"]["size_bytes"]) > 0
    watcher = await asyncpg.connect(cluster.server.url("kids-ascension"))
    try:
        stats = await pg.data("connection-stats", database="ka-db")
        names = await watcher.fetch("SELECT application_name FROM pg_stat_activity WHERE usename = $1", OWNER)
    finally:
        await watcher.close()
    assert stats["pool"]["maxConnections"] == 10 and stats["pool"]["connectionErrors"] == 0
    assert stats["pool"]["total"] >= 1 and stats["pool"]["waiting"] == 0
    assert {row["application_name"] for row in names} == {"mcp-gateway-ka"}
    test = await pg.data("test", database="ol-db")
    assert test["status"] == "connected" and test["latency"].endswith("ms") and "," not in test["version"]
    assert test["serverTime"].endswith("Z") and test["database"] == "ozean-licht"


async def test_explain_plans_without_running(pg: AgentClient) -> None:
    plan = await pg.data("explain", ["DELETE FROM users WHERE id = $1", 3], database="ka-db")
    assert plan["plan"][0]["Plan"]["Node Type"] == "ModifyTable"
    assert (await pg.data("query", ["SELECT count(*) AS n FROM users"], database="ka-db"))["rows"] == [{"n": "150"}]


async def test_active_queries_blocking_locks_and_cancel_query(pg: AgentClient, cluster: Cluster) -> None:
    holder = await asyncpg.connect(cluster.server.url("kids-ascension"))
    waiter = await asyncpg.connect(cluster.url("kids-ascension"))
    await holder.execute("BEGIN; LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
    waiting = asyncio.create_task(waiter.fetch("SELECT * FROM locked"))
    try:
        await asyncio.sleep(0.3)
        active = await pg.data("active-queries", database="ka-db")
        blocked = await pg.data("blocking-locks", database="ka-db")
        waiter_pid = waiter.get_server_pid()
        cancelled = await pg.data("cancel-query", [waiter_pid], database="ka-db")
        with pytest.raises(asyncpg.QueryCanceledError):
            await waiting
    finally:
        await holder.close()
        await waiter.close()
    assert any(query["pid"] == waiter_pid and query["query"] == "SELECT * FROM locked" for query in active["queries"])
    assert [(b["pid"], b["blocked_by"]) for b in blocked["blocked"]] == [(waiter_pid, [holder.get_server_pid()])]
    assert cancelled == {"operation": "cancel_query", "database": "kids-ascension", "pid": waiter_pid,
                         "cancelled": True}


async def test_table_sizes_and_list_databases(pg: AgentClient) -> None:
    sizes = await pg.data("table-sizes", {"limit": 2}, database="ka-db")
    assert sizes["count"] == 2 and sizes["tables"][0]["name"] == "users"
    listed = await pg.data("list-databases")
    assert listed["databases"][0] == {"name": "kids-ascension", "aliases": ["kids-ascension-db", "ka-db"],
                                      "readOnly": True, "maxRows": 1000, "reachable": True}
    assert [d["readOnly"] for d in listed["databases"]] == [True, True, True, False]


async def test_execute_writes_only_where_the_database_is_writable(pg: AgentClient, cluster: Cluster) -> None:
    upsert = "INSERT INTO events VALUES ($1, 1) ON CONFLICT (name) DO UPDATE SET hits = events.hits + 1"
    first = await pg.data("execute", {"query": upsert, "params": ["signup"]}, database="an")
    second = await pg.data("execute", [upsert, ["login"]], database="analytics")
    assert (first["affectedRows"], first["command"], second["affectedRows"]) == (1, "INSERT", 1)
    assert (await pg.data("query", ["SELECT name, hits FROM events ORDER BY name"], database="an"))["rows"] == [
        {"name": "login", "hits": 1}, {"name": "signup", "hits": 2}]
    refused = await pg.error("execute", ["DELETE FROM users"], database="ka-db")
    assert refused["code"] == -32009 and "read-only" in refused["message"]
    still_read_only = await pg.error("query", ["DELETE FROM events"], database="an")  # query never writes
    assert still_read_only["data"]["sqlstate"] == "25006"


# -- the declaration: slash form, capabilities ------------------------------------------------------


@pytest.mark.parametrize(("command", "check"), [
    ("/mcp-postgres kids-ascension-db list tables", lambda d: d["database"] == "kids-ascension" and d["tableCount"]),
    ("/mcp-postgres ka-db describe users", lambda d: d["table"]["name"] == "users"),
    ("/mcp-postgres ka-db desc users", lambda d: d["table"]["name"] == "users"),
    ("/mcp-postgres ka-db select name from users where name = 'O''Brien'",
     lambda d: d["rows"] == [{"name": "O'Brien"}]),
    ('/mcp-postgres ol-db query SELECT title AS "Title" FROM courses', lambda d: d["rows"] == [{"Title": "Atem"}]),
    ("/mcp-postgresql ozean-licht-db list tables", lambda d: d["database"] == "ozean-licht"),
    ("/mcp-postgres shared-users-db select id from accounts", lambda d: d["rows"] == [{"id": 7}])])
async def test_the_slash_shorthands_come_from_the_declaration(pg: AgentClient, command: str, check: Any) -> None:
    body = (await pg.slash(command)).json()
    assert "result" in body and check(body["result"]["data"]), body


async def test_a_configured_database_is_chosen_in_the_slash_form_by_option(pg: AgentClient) -> None:
    body = (await pg.slash("/mcp-postgres list tables", database="an")).json()
    assert body["result"]["data"]["database"] == "analytics"


async def test_capabilities_carry_the_spec_costs_and_every_operation(pg: AgentClient, tmp_path: Path) -> None:
    names = [operation.name for operation in POSTGRES_OPERATIONS]
    assert names == ["list-tables", "describe-table", "query", "schema-info", "connection-stats", "test", "explain",
                     "active-queries", "blocking-locks", "table-sizes", "list-databases", "cancel-query", "execute"]
    result = await pg.result("test", database="ka-db")
    assert (result["metadata"]["tokensUsed"], result["metadata"]["cost"]) == (100, 0.0015)
    query = await pg.result("query", ["SELECT 1"], database="ka-db")
    assert query["metadata"]["tokensUsed"] == 800
    assert query["metadata"]["database"] == "kids-ascension"  # the database's name, whichever alias was given
