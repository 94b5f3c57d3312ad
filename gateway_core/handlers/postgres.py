"""PostgreSQL: the spec's three databases (kids-ascension, ozean-licht, shared-users) and any number from config,
one asyncpg pool each, opened on first use (shared/spec/services.md, postgres).

Read-only for real: every statement runs in a `BEGIN READ ONLY` transaction with `statement_timeout` and
`lock_timeout`, alone on the extended protocol (a second statement is the database's own 42601), its rows read
through a portal up to the cap, never by editing the SQL. Whatever the database refuses (DELETE, COPY FROM,
SELECT … INTO, nextval()) it refuses itself, and its SQLSTATE decides the gateway's error. asyncpg rather than
psycopg 3: about half the client CPU per query here (bench/postgres_drivers.py), and a portal with a row limit
for any statement (psycopg reads a capped number of rows only through DECLARE, which takes SELECTs alone)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, cast

from pydantic import AliasChoices, Field

from gateway_core.clock import Clock
from gateway_core.config import PostgresDatabaseSettings, Settings
from gateway_core.errors import (
    Conflict,
    GatewayError,
    InvalidParams,
    ResourceNotFound,
    ServiceUnavailable,
    UpstreamTimeout,
    ValidationFailed,
)
from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.postgres_values import (
    SESSION_SETTINGS,
    bind_parameters,
    column_converter,
    json_row,
    json_rows_of,
    prepare_connection,
)
from gateway_core.health import HealthReport, HealthStatus
from gateway_core.json_bytes import json_bytes
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable, Picker, Target

if TYPE_CHECKING:
    import asyncpg

MAX_SQL_CHARACTERS = 10_000
MAX_RESULT_BYTES = 1 << 20  # about 1 MiB of rows as JSON; past it the rows are cut and `truncated` says so
QUERY_TEXT_SHOWN = 500  # characters of another session's query in active-queries and blocking-locks


# -- the databases -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpecDatabase:
    """One of the spec's databases: its settings' prefix (POSTGRES_KA_...), the URL settings that may name it
    whole, and the names the upstream admin app and slash form use for it."""

    name: str
    prefix: str
    url_settings: tuple[str, ...]
    application_name: str
    aliases: tuple[str, ...]


SPEC_DATABASES = (
    SpecDatabase("kids-ascension", "POSTGRES_KA", ("POSTGRES_KA_URL", "POSTGRES_KIDS_ASCENSION_URL"), "mcp-gateway-ka",
                 ("kids-ascension-db", "ka-db")),
    SpecDatabase("ozean-licht", "POSTGRES_OL", ("POSTGRES_OL_URL", "POSTGRES_OZEAN_LICHT_URL"), "mcp-gateway-ol",
                 ("ozean-licht-db", "ol-db")),
    SpecDatabase("shared-users", "POSTGRES_SHARED", ("POSTGRES_SHARED_URL",), "mcp-gateway-shared",
                 ("shared-users-db",)),
)


@dataclass(frozen=True, slots=True)
class Database:
    name: str
    connect: Mapping[str, Any]  # asyncpg.connect's arguments: a dsn, or host, port, user, password, database
    application_name: str
    aliases: tuple[str, ...] = ()
    read_only: bool = True
    max_rows: int = 1000


def databases_from_settings(settings: Settings) -> list[Database]:
    """The spec's databases that are configured (a URL, or a host), then the config's."""
    databases = []
    for spec in SPEC_DATABASES:
        url = next((value for name in spec.url_settings if (value := settings.setting(name))), None)
        host = settings.setting(f"{spec.prefix}_HOST")
        if url is None and host is None:
            continue
        part = spec.prefix.lower()
        connect: dict[str, Any] = {"dsn": url} if url else {
            "host": host, "port": getattr(settings, f"{part}_port"), "database": getattr(settings, f"{part}_database"),
            "user": getattr(settings, f"{part}_user"), "password": settings.setting(f"{spec.prefix}_PASSWORD")}
        databases.append(Database(spec.name, connect, spec.application_name, spec.aliases))
    for name, configured in settings.postgres.databases.items():
        databases.append(_configured(name, configured))
    return databases


def _configured(name: str, configured: PostgresDatabaseSettings) -> Database:
    return Database(name, {"dsn": configured.url.get_secret_value()}, f"mcp-gateway-{name}",
                    tuple(configured.aliases), configured.read_only, configured.max_rows)


# -- argument models ---------------------------------------------------------------------------------

DATABASE = Field(min_length=1, description="the database: kids-ascension, ozean-licht, shared-users or one from "
                                           "config, or an alias (ka-db, ol-db, shared-users-db, ...)")


class DatabaseArgs(OperationArgs):
    database: str = DATABASE


class DescribeTableArgs(OperationArgs):
    table: str = Field(min_length=1, max_length=300,
                       description='[schema.]table, as SQL writes it: "Quoted" names keep capitals and dots')
    table_schema: str | None = Field(None, min_length=1, validation_alias=AliasChoices("schema", "table_schema"),
                                     description="the schema, when `table` names none (default public)")
    database: str = DATABASE


class StatementArgs(OperationArgs):
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARACTERS, description="one SQL statement; $1..$n for params")
    params: list[Any] = Field(default_factory=list, description="the values of $1..$n")
    database: str = DATABASE


class QueryArgs(StatementArgs):
    limit: int = Field(100, ge=1, description="rows at most (the database's max_rows, 1000 by default, caps it)")


class ExecuteArgs(OperationArgs):
    query: str = Field(min_length=1, max_length=MAX_SQL_CHARACTERS, description="one SQL statement that writes")
    params: list[Any] = Field(default_factory=list, description="the values of $1..$n")
    database: str = DATABASE


class TableSizesArgs(OperationArgs):
    limit: int = Field(20, ge=1, le=1000, description="the largest N tables")
    database: str = DATABASE


class CancelQueryArgs(OperationArgs):
    pid: int = Field(ge=1, description="the backend's pid (from active-queries)")
    database: str = DATABASE


# -- the declarations --------------------------------------------------------------------------------

Runner = Callable[["DatabaseSession", dict[str, Any]], Awaitable[dict[str, Any]]]
# Text that may hold `$n` without it being a placeholder: literals, quoted names, comments, dollar quotes.
_NOT_PLACEHOLDERS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|(\$(?:[A-Za-z_]\w*)?\$).*?\1",
                               re.S)


def highest_placeholder(sql: str) -> int:
    return max((int(n) for n in re.findall(r"\$(\d+)", _NOT_PLACEHOLDERS.sub(" ", sql))), default=0)


@dataclass(frozen=True, slots=True)
class PostgresOperation(Operation):
    run: Runner | None = None  # what it does in the database's transaction; None: across the databases
    writes: bool = False  # a read-write transaction, committed; only where the database has read_only = false


@dataclass(frozen=True, slots=True)
class StatementOperation(PostgresOperation):
    """Takes a statement first and its parameters after it: `[sql, p1, p2, …]` (HEAD), or `[sql, [p1, p2, …]]`
    (the admin app's storage client), told apart by the list's length against the highest `$n`."""

    def _name_arguments(self, args: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
        if not isinstance(args, list) or not args or isinstance(args[0], dict):
            return Operation._name_arguments(self, args)
        statement, *parameters = args
        if (len(parameters) == 1 and isinstance(parameters[0], list) and isinstance(statement, str)
                and len(parameters[0]) == highest_placeholder(statement)):
            parameters = parameters[0]
        return {self.positional_fields[0]: statement, "params": parameters}


_DATABASE = {"database": Picker("list-databases", "databases", value="name", label="name")}


def _snake(name: str) -> str:
    return name.replace("-", "_")


async def _list_tables(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    tables = await session.fetch(
        "SELECT schemaname, tablename, tableowner, hasindexes, hasrules, hastriggers FROM pg_catalog.pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY schemaname, tablename")
    return {"tableCount": len(tables), "tables": [
        {"schema": t["schemaname"], "name": t["tablename"], "fullName": f"{t['schemaname']}.{t['tablename']}",
         "owner": t["tableowner"], "features": {"indexes": t["hasindexes"], "rules": t["hasrules"],
                                                "triggers": t["hastriggers"]}} for t in tables]}


CONSTRAINT_TYPES = {"p": "PRIMARY KEY", "u": "UNIQUE", "f": "FOREIGN KEY", "c": "CHECK", "x": "EXCLUDE"}


async def _describe_table(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    # The database reads the name as SQL does (quotes, case, dots inside quotes): parse_ident.
    parts = (await session.fetch("SELECT parse_ident($1) AS parts", values["table"]))[0]["parts"]
    if len(parts) == 1:
        parts = [values["table_schema"] or "public", parts[0]]
    if len(parts) != 2:
        raise InvalidParams("Invalid arguments for describe-table: table: give [schema.]table",
                            {"errors": [{"field": "table", "message": "give [schema.]table", "type": "value_error"}]})
    schema, name = parts
    found = await session.fetch(
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", schema, name)
    if not found:
        raise ResourceNotFound(f"PostgreSQL ({session.database.name}): no table {schema}.{name}",
                               {"kind": "table", "id": f"{schema}.{name}", "database": session.database.name})
    oid = found[0]["oid"]
    columns = await session.fetch(
        "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable, "
        "pg_get_expr(d.adbin, d.adrelid) AS default FROM pg_catalog.pg_attribute a "
        "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", oid)
    constraints = await session.fetch(
        "SELECT conname, contype::text, unnest(conkey) AS attnum FROM pg_catalog.pg_constraint WHERE conrelid = $1 "
        "ORDER BY conname", oid)
    indexes = await session.fetch(
        "SELECT i.relname, pg_get_indexdef(x.indexrelid) AS definition, x.indisunique, x.indisprimary "
        "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = $1 "
        "ORDER BY i.relname", oid)
    statistics = (await session.fetch(
        "SELECT coalesce(s.n_live_tup, 0) AS row_count, pg_size_pretty(pg_total_relation_size($1)) AS total_size, "
        "pg_size_pretty(pg_relation_size($1)) AS table_size, pg_size_pretty(pg_indexes_size($1)) AS indexes_size "
        "FROM (SELECT $1::oid AS relid) r LEFT JOIN pg_catalog.pg_stat_all_tables s ON s.relid = r.relid", oid))[0]
    by_column: dict[int, list[dict[str, str]]] = {}
    for constraint in constraints:
        by_column.setdefault(constraint["attnum"], []).append(
            {"name": constraint["conname"], "type": CONSTRAINT_TYPES.get(constraint["contype"], constraint["contype"])})
    return {
        "table": {"schema": schema, "name": name, "fullName": f"{schema}.{name}"},
        "columns": [{"name": c["attname"], "type": c["type"], "nullable": c["nullable"], "default": c["default"],
                     "position": c["attnum"], "constraints": by_column.get(c["attnum"], [])} for c in columns],
        "indexes": [{"name": i["relname"], "definition": i["definition"], "unique": i["indisunique"],
                     "primary": i["indisprimary"]} for i in indexes],
        "statistics": statistics,
    }


async def _query(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    return await session.rows(values["sql"], values["params"], min(values["limit"], session.database.max_rows))


async def _schema_info(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    database = (await session.fetch(
        "SELECT current_database() AS name, pg_database_size(current_database()) AS size_bytes, "
        "pg_size_pretty(pg_database_size(current_database())) AS size_pretty, version() AS version"))[0]
    schemas = await session.fetch(
        "SELECT s.schema_name, s.schema_owner, "
        "(SELECT count(*) FROM information_schema.tables t WHERE t.table_schema = s.schema_name "
        " AND t.table_type = 'BASE TABLE')::int AS table_count, "
        "(SELECT count(*) FROM information_schema.views v WHERE v.table_schema = s.schema_name)::int AS view_count "
        "FROM information_schema.schemata s WHERE s.schema_name NOT IN ('pg_catalog', 'information_schema') "
        "AND s.schema_name NOT LIKE 'pg\\_toast%' AND s.schema_name NOT LIKE 'pg\\_temp\\_%' ORDER BY s.schema_name")
    return {"database": database, "schemas": schemas, "summary": {
        "totalSchemas": len(schemas), "totalTables": sum(s["table_count"] for s in schemas),
        "totalViews": sum(s["view_count"] for s in schemas)}}


async def _connection_stats(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    activity = await session.fetch(
        "SELECT pid, usename, application_name, client_addr::text AS client_addr, state, query_start, state_change "
        "FROM pg_catalog.pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "ORDER BY pid")
    return {"pool": session.pool_counters, "activeConnections": activity}


async def _test(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    answer = (await session.fetch("SELECT now() AS server_time, current_database() AS name, version() AS version"))[0]
    return {"status": "connected", "latency": f"{round((time.perf_counter() - started) * 1000)}ms",
            "serverTime": answer["server_time"], "currentDatabase": answer["name"],
            "version": str(answer["version"]).split(",", 1)[0]}


async def _explain(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    # Planned only: EXPLAIN without ANALYZE never runs the statement.
    result = await session.rows(f"EXPLAIN (FORMAT JSON) {values['sql']}", values["params"], 1)
    return {"plan": result["rows"][0]["QUERY PLAN"] if result["rows"] else None}


async def _active_queries(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    queries = await session.fetch(
        "SELECT pid, datname, usename, application_name, state, wait_event_type, wait_event, query_start, "
        "extract(epoch FROM now() - query_start)::float8 AS running_seconds, left(query, $1) AS query "
        "FROM pg_catalog.pg_stat_activity WHERE state IS DISTINCT FROM 'idle' AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend' ORDER BY query_start NULLS LAST", QUERY_TEXT_SHOWN)
    return {"count": len(queries), "queries": queries}


async def _blocking_locks(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    blocked = await session.fetch(
        # pg_blocking_pids takes the lock manager's locks: asked once, and only of sessions waiting on a lock.
        "SELECT * FROM (SELECT pid, usename, application_name, left(query, $1) AS query, "
        "pg_blocking_pids(pid) AS blocked_by, extract(epoch FROM now() - query_start)::float8 AS waiting_seconds "
        "FROM pg_catalog.pg_stat_activity WHERE wait_event_type = 'Lock' OFFSET 0) waiting "
        "WHERE cardinality(blocked_by) > 0 ORDER BY waiting_seconds DESC", QUERY_TEXT_SHOWN)
    return {"count": len(blocked), "blocked": blocked}


async def _table_sizes(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    tables = await session.fetch(
        "SELECT n.nspname AS schema, c.relname AS name, pg_total_relation_size(c.oid) AS total_bytes, "
        "pg_size_pretty(pg_total_relation_size(c.oid)) AS total_size, "
        "pg_size_pretty(pg_relation_size(c.oid)) AS table_size, pg_size_pretty(pg_indexes_size(c.oid)) AS "
        "indexes_size FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY pg_total_relation_size(c.oid) DESC, 1, 2 LIMIT $1",
        values["limit"])
    return {"count": len(tables), "tables": tables}


async def _cancel_query(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    cancelled = (await session.fetch("SELECT pg_cancel_backend($1) AS cancelled", values["pid"]))[0]["cancelled"]
    return {"pid": values["pid"], "cancelled": cancelled}


async def _execute(session: DatabaseSession, values: dict[str, Any]) -> dict[str, Any]:
    return await session.write(values["query"], values["params"])


POSTGRES_OPERATIONS: tuple[PostgresOperation, ...] = (
    # The operations agents already call.
    PostgresOperation("list-tables", DatabaseArgs, "read", "The tables of a database, outside the system schemas",
                      tokens=300, group="tables", pickers=_DATABASE, run=_list_tables),
    PostgresOperation("describe-table", DescribeTableArgs, "read", "A table's columns, constraints, indexes and size",
                      tokens=500, group="tables", aliases=("describe", "desc"), target=Target("table", "table"),
                      pickers=_DATABASE, run=_describe_table),
    StatementOperation("query", QueryArgs, "read",
                       "One read-only SQL statement with $1..$n parameters; rows up to the limit",
                       tokens=800, group="queries", aliases=("select",), slash_rest="text", slash_keeps=("select",),
                       pickers=_DATABASE, run=_query),
    PostgresOperation("schema-info", DatabaseArgs, "read", "Schemas with their table and view counts, size, version",
                      tokens=400, group="databases", aliases=("schema-introspection",), pickers=_DATABASE,
                      run=_schema_info),
    PostgresOperation("connection-stats", DatabaseArgs, "read", "The pool's counters and this database's sessions",
                      tokens=200, group="activity", pickers=_DATABASE, run=_connection_stats),
    PostgresOperation("test", DatabaseArgs, "read", "Connect and ask the server's time and version", tokens=100,
                      group="databases", pickers=_DATABASE, run=_test),
    # What an operator reaches for next.
    StatementOperation("explain", StatementArgs, "read", "The plan of a statement (EXPLAIN, never ANALYZE)",
                       group="queries", slash_rest="text", pickers=_DATABASE, run=_explain),
    PostgresOperation("active-queries", DatabaseArgs, "read", "Sessions running a statement now, longest first",
                      group="activity", pickers=_DATABASE, run=_active_queries),
    PostgresOperation("blocking-locks", DatabaseArgs, "read", "Sessions waiting on a lock, and who holds it",
                      group="activity", pickers=_DATABASE, run=_blocking_locks),
    PostgresOperation("table-sizes", TableSizesArgs, "read", "The largest tables, indexes and TOAST included",
                      group="tables", pickers=_DATABASE, run=_table_sizes),
    PostgresOperation("list-databases", NoArgs, "read", "The configured databases: aliases, read-only, reachable",
                      group="databases"),
    PostgresOperation("cancel-query", CancelQueryArgs, "write", "Cancel a session's running statement",
                      group="activity", target=Target("backend", "pid"), pickers=_DATABASE, run=_cancel_query),
    StatementOperation("execute", ExecuteArgs, "write",
                       "One writing statement, committed; only on a database configured read_only = false",
                       group="queries", slash_rest="text", writes=True, pickers=_DATABASE, run=_execute),
)


# -- sessions ----------------------------------------------------------------------------------------


class DatabaseSession:
    """One transaction on one pooled connection: statements alone on the extended protocol, rows through a portal."""

    def __init__(self, connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], database: Database,
                 pool_counters: dict[str, Any]) -> None:
        self.connection = connection
        self.database = database
        self.pool_counters = pool_counters

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Our own catalog queries (their size bounded by their SQL), as JSON rows."""
        return [json_row(record) for record in await self.connection.fetch(sql, *args)]

    async def rows(self, sql: str, params: Sequence[Any], limit: int) -> dict[str, Any]:
        """An agent's statement: at most `limit` rows (and about MAX_RESULT_BYTES), `limit + 1` read to know
        whether any were dropped."""
        statement = await self.connection.prepare(sql)
        bound = bind_parameters(statement.get_parameters(), params)
        records = await (await statement.cursor(*bound)).fetch(limit + 1)  # one round trip, the portal capped
        return query_answer(statement.get_attributes(), records, limit)

    async def write(self, sql: str, params: Sequence[Any]) -> dict[str, Any]:
        statement = await self.connection.prepare(sql)
        returned = await statement.fetch(*bind_parameters(statement.get_parameters(), params))
        command, *counts = (statement.get_statusmsg() or "").split()
        affected = int(counts[-1]) if counts and counts[-1].isdigit() else 0
        return {"command": command, "affectedRows": affected,
                "rows": [json_row(record) for record in returned[: self.database.max_rows]]}


def query_answer(attributes: Sequence[asyncpg.Attribute], records: Sequence[asyncpg.Record],
                 limit: int) -> dict[str, Any]:
    """`query`'s answer for what its portal gave (up to `limit + 1` records): the values as agents read them, at
    most `limit` rows and about MAX_RESULT_BYTES, `truncated` only when rows were dropped."""
    fields = [{"name": attribute.name, "dataType": attribute.type.oid, "typeName": attribute.type.name}
              for attribute in attributes]
    json_rows = json_rows_of([(attribute.name, column_converter(attribute.type.name, attribute.type.kind))
                              for attribute in attributes])
    rows = json_rows(records[:limit])
    truncated = len(records) > limit
    if len(json_bytes(rows)) > MAX_RESULT_BYTES + len(rows) + 1:  # the rows' own bytes past the cap ("[", "]", ",")
        rows, truncated = _within_result_cap(rows), True
    return {"rowCount": len(rows), "rows": rows, "fields": fields, "truncated": truncated}


def _within_result_cap(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first rows whose JSON adds up to MAX_RESULT_BYTES at most."""
    size = 0
    for count, row in enumerate(rows):
        size += len(json_bytes(row))
        if size > MAX_RESULT_BYTES:
            return rows[:count]
    return rows


# -- errors ------------------------------------------------------------------------------------------

# SQLSTATE (a class's two characters, or a code) → the gateway's error, first match wins (services.md).
SQLSTATE_ERRORS: tuple[tuple[tuple[str, ...], type[GatewayError]], ...] = (
    (("57014",), UpstreamTimeout),
    (("25006",), ValidationFailed),
    (("40001", "40P01", "55P03"), Conflict),
    (("28000", "28P01", "3D000", "08", "53300", "57P01", "57P03"), ServiceUnavailable),
    (("42", "22", "23"), ValidationFailed),
)


def database_error(exc: BaseException, database: Database) -> GatewayError | None:
    """The gateway's error for what asyncpg raised (never the SQL: the server's message, its SQLSTATE, position
    and hint); None for what is not a database's answer (a bug of ours)."""
    about: dict[str, Any] = {"database": database.name}
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        message = str(getattr(exc, "message", None) or type(exc).__name__)
        error_class = next((error for codes, error in SQLSTATE_ERRORS if sqlstate.startswith(codes)), ValidationFailed)
        if sqlstate == "25006":
            message = f"read-only for the gateway: {message}"
        position = getattr(exc, "position", None)
        return error_class(f"PostgreSQL ({database.name}): {message}", {
            **about, "sqlstate": sqlstate, "position": int(position) if position else None,
            "hint": getattr(exc, "hint", None)})
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"PostgreSQL ({database.name}): no connection within the connect timeout", about)
    if isinstance(exc, OSError):
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__  # its text has the address in it
        return ServiceUnavailable(f"PostgreSQL ({database.name}) cannot be reached: {reason}", about)
    import asyncpg  # loaded already: the pool that raised this imported it

    if isinstance(exc, asyncpg.DataError):  # a parameter asyncpg could not encode
        return InvalidParams(f"Invalid arguments: params: {type(exc).__name__}",
                             {"errors": [{"field": "params", "message": "a parameter does not fit its $n",
                                          "type": "parameter_type"}], **about})
    if isinstance(exc, asyncpg.UnsupportedClientFeatureError):  # a range or composite of text-coded values
        named = re.search(r'type "[^"]*"\."([^"]+)"', str(exc))
        type_name = named.group(1) if named else "a column's type"
        return ValidationFailed(f"PostgreSQL ({database.name}): the gateway cannot carry values of {type_name}: "
                                f"select them as text (the column::text), pass them as text ($1::text::{type_name})",
                                about)
    if isinstance(exc, asyncpg.InterfaceError):
        return ServiceUnavailable(f"PostgreSQL ({database.name}): the connection failed ({type(exc).__name__})",
                                  about)
    return None


# -- the handler -------------------------------------------------------------------------------------


@dataclass
class PoolSettings:
    min_size: int = 2
    max_size: int = 10
    idle_seconds: float = 10.0
    connect_seconds: float = 30.0
    statement_timeout_ms: int = 10_000
    lock_timeout_ms: int = 1000


@dataclass
class _PoolState:
    pool: asyncpg.Pool | None = None
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)


class PostgresHandler(ServiceHandler):
    service = "postgres"
    operations = OperationTable(
        POSTGRES_OPERATIONS,
        slash_prefixes={alias: {"database": spec.name} for spec in SPEC_DATABASES for alias in spec.aliases},
        groups=("tables", "queries", "activity", "databases"))

    def __init__(self, databases: Sequence[Database], pool_settings: PoolSettings | None = None) -> None:
        self._databases = list(databases)
        self._settings = pool_settings or PoolSettings()
        self._by_name: dict[str, Database] = {}
        for database in self._databases:
            for name in (database.name, *database.aliases):
                self._by_name.setdefault(name.lower(), database)
        self._pools = {database.name: _PoolState() for database in self._databases}
        self._waiting: Counter[str] = Counter()
        self._connection_errors: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        return cls(databases_from_settings(settings), PoolSettings(
            settings.db_pool_min, settings.db_pool_max, settings.db_idle_timeout_ms / 1000,
            settings.default_timeout_ms / 1000, settings.db_query_timeout_ms, settings.postgres.lock_timeout_ms))

    async def aclose(self) -> None:
        for state in self._pools.values():
            if state.pool is not None:
                state.pool.terminate()
                state.pool = None

    # -- executing ----------------------------------------------------------------------------------

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        declared = cast(PostgresOperation, operation)  # this handler's table holds only PostgresOperations
        values = args.model_dump()
        result: dict[str, Any] = {"operation": _snake(declared.name)}
        if declared.run is None:
            return {**result, **await self._list_databases()}
        database = self.database(values["database"])
        if declared.writes and database.read_only:
            raise ValidationFailed(f"PostgreSQL ({database.name}) is read-only for the gateway: {declared.name} needs "
                                   "a database configured with read_only = false", {"database": database.name})
        async with self.session(database, writes=declared.writes) as session:
            return {**result, "database": database.name, **await declared.run(session, values)}

    def database(self, name: str) -> Database:
        database = self._by_name.get(name.strip().lower())
        if database is None:
            names = [database.name for database in self._databases]
            raise InvalidParams(f"Invalid arguments: database: no database {name!r} (configured: "
                                f"{', '.join(names) or 'none'})",
                                {"errors": [{"field": "database", "message": "unknown database", "type": "enum"}],
                                 "databases": names})
        return database

    @contextlib.asynccontextmanager
    async def session(self, database: Database, writes: bool = False) -> AsyncIterator[DatabaseSession]:
        """A transaction (read-only unless `writes`) under the statement and lock timeouts, rolled back unless it
        writes and succeeds; errors come out as the gateway's."""
        try:
            pool = await self._pool(database)
            self._waiting[database.name] += 1
            try:
                connection = await pool.acquire(timeout=self._settings.connect_seconds)
            finally:
                self._waiting[database.name] -= 1
            try:
                await connection.execute(
                    f"BEGIN{'' if writes else ' READ ONLY'}; "
                    f"SET LOCAL statement_timeout = {int(self._settings.statement_timeout_ms)}; "
                    f"SET LOCAL lock_timeout = {int(self._settings.lock_timeout_ms)}")
                yield DatabaseSession(connection, database, self._pool_counters(database, pool))
                await connection.execute("COMMIT" if writes else "ROLLBACK")
            except BaseException:
                if not connection.is_closed() and connection.is_in_transaction():
                    with contextlib.suppress(Exception):
                        await connection.execute("ROLLBACK")
                raise
            finally:
                await pool.release(connection)
        except GatewayError:
            raise
        except Exception as exc:
            error = database_error(exc, database)
            if error is None:
                raise
            if isinstance(error, ServiceUnavailable) or (isinstance(error, UpstreamTimeout)
                                                         and getattr(exc, "sqlstate", None) is None):
                self._connection_errors[database.name] += 1  # connection-stats' connectionErrors
            raise error from None

    async def _pool(self, database: Database) -> asyncpg.Pool:
        state = self._pools[database.name]
        if state.pool is not None:
            return state.pool
        async with state.opening:
            if state.pool is None:
                import asyncpg

                settings = self._settings
                async with asyncio.timeout(settings.connect_seconds):
                    state.pool = await asyncpg.create_pool(
                        **database.connect, min_size=min(settings.min_size, settings.max_size),
                        max_size=settings.max_size, max_inactive_connection_lifetime=settings.idle_seconds,
                        timeout=settings.connect_seconds, init=prepare_connection,
                        server_settings={**SESSION_SETTINGS, "application_name": database.application_name})
            return state.pool

    def _pool_counters(self, database: Database, pool: asyncpg.Pool) -> dict[str, Any]:
        return {"total": pool.get_size(), "idle": pool.get_idle_size(), "waiting": self._waiting[database.name],
                "maxConnections": pool.get_max_size(), "connectionErrors": self._connection_errors[database.name]}

    async def _reachable(self, database: Database) -> tuple[bool, str, float]:
        """`SELECT 1` on the database: whether it answered, why not, and how long it took (ms)."""
        started = time.perf_counter()
        try:
            async with self.session(database) as session:
                await session.fetch("SELECT 1")
        except GatewayError as error:
            return False, error.message, (time.perf_counter() - started) * 1000
        return True, "", (time.perf_counter() - started) * 1000

    async def _list_databases(self) -> dict[str, Any]:
        checks = await asyncio.gather(*(self._reachable(database) for database in self._databases))
        return {"count": len(self._databases), "databases": [
            {"name": database.name, "aliases": list(database.aliases), "readOnly": database.read_only,
             "maxRows": database.max_rows, "reachable": reachable, **({"error": why} if not reachable else {})}
            for database, (reachable, why, _) in zip(self._databases, checks, strict=True)]}

    # -- health -------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        checks = await asyncio.gather(*(self._reachable(database) for database in self._databases))
        latency = round(max((ms for _, _, ms in checks), default=0.0), 3)
        down = [why for reachable, why, _ in checks if not reachable]
        if not down:
            return HealthReport("healthy", latency, f"{len(checks)} database(s) answer")
        status: HealthStatus = "down" if len(down) == len(checks) else "degraded"
        return HealthReport(status, latency, "; ".join(down))

