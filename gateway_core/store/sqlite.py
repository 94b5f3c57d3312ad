"""The SQLite store (aiosqlite, WAL): one file holds agents, grants, the calls ledger and the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from gateway_core.clock import Clock, system_clock
from gateway_core.store.migrations import MIGRATIONS
from gateway_core.store.records import (
    Agent,
    AuditEvent,
    CallRecord,
    Grant,
    Operator,
    PermissionRequest,
    Scope,
    UsageTotals,
)

_CALL_COLUMNS = (
    "id, ts, agent_id, method, service, operation, status, error_code, "
    "duration_ms, tokens, cost_usd, rpc_id, permission_request_id, via"
)
_GRANT_COLUMNS = ("id, agent_id, service, operation, expires_at, granted_by, granted_at, revoked_at, args_hash, "
                  "revoked_by")
_REQUEST_COLUMNS = (
    "id, agent_id, service, operation, args_hash, risk, reason, params_preview, status, created_at, "
    "expires_at, decided_at, decided_by, decision_reason, scope, grant_id"
)


def _request(row: Any) -> PermissionRequest:
    values = list(row)
    values[7] = json.loads(values[7]) if values[7] else None
    return PermissionRequest(*values)


class StoreError(Exception):
    """The store cannot do what was asked (unknown agent, unwritable file, newer schema)."""


class UnknownPermissionRequest(StoreError):
    pass


class AlreadyDecided(StoreError):
    """The request was decided (or expired) before: the first decision stands."""

    def __init__(self, request: PermissionRequest) -> None:
        super().__init__(f"permission request {request.id} is already {request.status}")
        self.request = request


def _create_private(path: Path) -> None:
    """The store's directory and an empty file, readable by the owner only (SQLite gives its WAL and
    shared-memory files the database file's mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


BUSY_TIMEOUT_MS = 5000  # how long a statement waits for another process's lock on the file
_WAL_SWITCH_PAUSE_SECONDS = 0.01


async def _use_wal(connection: aiosqlite.Connection) -> None:
    """Switches a new file to WAL (a file switched once stays so). The switch needs the file alone for a moment
    and SQLite does not always wait for that, whatever busy_timeout says: another process opening the same new
    store at that moment made it fail at once ("database is locked"). It is tried again until busy_timeout has
    passed (a try that did wait, for a lock held all along, uses that time up)."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            return
        except aiosqlite.OperationalError as exc:
            if "database is locked" not in str(exc) or loop.time() >= give_up_at:
                raise
        await asyncio.sleep(_WAL_SWITCH_PAUSE_SECONDS)


def _reason(exc: BaseException) -> str:
    """What is wrong with a store file, in an operator's words (SQLite's own are terse)."""
    text = str(exc)
    if "file is not a database" in text:
        return "it is not an SQLite database (damaged, or some other file)"
    if "database is locked" in text:
        return f"another process holds it locked (waited {BUSY_TIMEOUT_MS // 1000} s)"
    if "disk image is malformed" in text:
        return "the file is damaged (SQLite: database disk image is malformed)"
    if isinstance(exc, PermissionError) or "readonly" in text or "unable to open" in text:
        return f"{text} (check the file, its directory and their permissions)"
    return text or type(exc).__name__


AGENT_REVOKED = "the agent was revoked"
# Audit actions that end a request or a grant: what our orchestrator tells its feed about, whoever wrote them.
_ENDING_ACTIONS = ("permission.expired", "permission.cancelled", "grant.revoked", "grant.used")


def new_grant_id() -> str:
    return f"grant_{uuid.uuid4().hex}"


class SQLiteStore:
    """All persistent state. Writes are serialised by one lock; each write is one transaction."""

    def __init__(self, connection: aiosqlite.Connection, path: Path, clock: Clock = system_clock) -> None:
        self._db = connection
        self.path = path
        self.clock = clock  # the time every row is stamped and every expiry is judged with
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path | str, clock: Clock = system_clock, create: bool = True) -> SQLiteStore:
        """The store at `path`, migrated; created (readable by its owner only) when `create` allows. Any
        failure is a StoreError saying which file and what is wrong, and leaves nothing running."""
        path = Path(path)
        if await asyncio.to_thread(path.is_dir):
            raise StoreError(f"cannot open the store at {path}: it is a directory")
        if not create and not await asyncio.to_thread(path.is_file):
            raise StoreError(f"there is no store at {path} (nothing was created): check --db")
        try:
            await asyncio.to_thread(_create_private, path)
            connection = await aiosqlite.connect(path, isolation_level=None)
        except Exception as exc:
            raise StoreError(f"cannot open the store at {path}: {_reason(exc)}") from None
        try:
            connection.row_factory = aiosqlite.Row
            await connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: a locked file fails in 5 s
            await _use_wal(connection)
            await connection.execute("PRAGMA synchronous=NORMAL")
            await connection.execute("PRAGMA foreign_keys=ON")
            store = cls(connection, path, clock)
            await store._migrate()
        except BaseException as exc:
            await connection.close()  # its thread would keep the process alive
            if isinstance(exc, StoreError) or not isinstance(exc, Exception):
                raise
            raise StoreError(f"cannot open the store at {path}: {_reason(exc)}") from None
        return store

    async def has_credentials(self) -> bool:
        """Whether any agent or operator token was ever issued from this store."""
        async with self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM agents) OR EXISTS (SELECT 1 FROM operators)"
        ) as cursor:
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            if self._db.in_transaction:  # left open by a caller cancelled mid-write: undo it first
                await self._db.execute("ROLLBACK")
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _migrate(self) -> None:
        await self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        async with self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        latest = MIGRATIONS[-1][0]
        if current > latest:
            raise StoreError(f"the store at {self.path} has schema {current}, newer than this version ({latest})")
        for version, script in MIGRATIONS:
            if version <= current:
                continue
            # executescript commits first, so the migration and its version row form one script. The
            # version row goes first: another process migrating the same file at the same moment waits
            # for the write lock, then fails on that row before touching anything, and finds it done.
            now = self.clock()
            try:
                await self._db.executescript(
                    f"BEGIN IMMEDIATE;\nINSERT INTO schema_version (version, applied_at) VALUES ({version}, {now!r});\n"
                    f"CREATE TEMP TABLE _now AS SELECT {now!r} AS ts;\n{script}\nDROP TABLE _now;\nCOMMIT;"
                )
            except aiosqlite.IntegrityError:
                await self._db.execute("ROLLBACK")
                if not await self._has_version(version):
                    raise

    async def _has_version(self, version: int) -> bool:
        async with self._db.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,)) as cursor:
            return await cursor.fetchone() is not None

    async def check_writable(self) -> None:
        """Raises StoreError when a write transaction cannot be taken (disk full, read-only file)."""
        try:
            async with self._transaction() as db:
                await db.execute("CREATE TEMP TABLE IF NOT EXISTS _probe (x)")
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store not writable: {exc}") from exc

    # -- agents -----------------------------------------------------------------------------------

    async def add_agent(self, agent_id: str, name: str, token_hash: str, actor: str) -> Agent:
        agent = Agent(id=agent_id, name=name, created_at=self.clock())
        try:
            async with self._transaction() as db:
                await db.execute(
                    "INSERT INTO agents (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                    (agent.id, agent.name, token_hash, agent.created_at),
                )
                await self._insert_audit(db, [AuditEvent(agent.created_at, actor, "agent.added", agent.id,
                                                         {"name": name})])
        except aiosqlite.IntegrityError as exc:
            raise StoreError(f"an agent with id {agent_id!r} already exists") from exc
        return agent

    async def list_agents(self, include_revoked: bool = True) -> list[Agent]:
        sql = "SELECT id, name, created_at, revoked_at FROM agents"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        async with self._db.execute(sql + " ORDER BY created_at") as cursor:
            return [Agent(*row) for row in await cursor.fetchall()]

    async def get_agent(self, agent_id: str) -> Agent | None:
        async with self._db.execute(
            "SELECT id, name, created_at, revoked_at FROM agents WHERE id = ?", (agent_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return Agent(*row) if row else None

    async def active_agents_by_token_hash(self) -> dict[str, Agent]:
        async with self._db.execute(
            "SELECT token_hash, id, name, created_at, revoked_at FROM agents WHERE revoked_at IS NULL"
        ) as cursor:
            return {row[0]: Agent(*row[1:]) for row in await cursor.fetchall()}

    async def revoke_agent(self, agent_id: str, actor: str) -> bool:
        """Revokes the agent, ends its grants and cancels its pending requests, all audited, in one transaction."""
        now = self.clock()
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE agents SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, agent_id)
            )
            if cursor.rowcount == 0:
                return False
            async with db.execute(
                f"SELECT {_GRANT_COLUMNS} FROM grants WHERE agent_id = ? AND revoked_at IS NULL "
                "AND (expires_at IS NULL OR expires_at > ?)", (agent_id, now),
            ) as rows:
                grants = [Grant(*row) for row in await rows.fetchall()]
            async with db.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM permission_requests WHERE agent_id = ? AND status = 'pending'",
                (agent_id,),
            ) as rows:
                requests = [_request(row) for row in await rows.fetchall()]
            await db.executemany("UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                                 [(now, actor, grant.id) for grant in grants])
            await db.executemany(
                "UPDATE permission_requests SET status = 'cancelled', decided_at = ?, decided_by = ?, "
                "decision_reason = ? WHERE id = ?",
                [(now, actor, AGENT_REVOKED, request.id) for request in requests])
            await self._insert_audit(db, [
                AuditEvent(now, actor, "agent.revoked", agent_id),
                *(AuditEvent(now, actor, "grant.revoked", grant.id,
                             {"agent_id": agent_id, "service": grant.service, "reason": AGENT_REVOKED})
                  for grant in grants),
                *(AuditEvent(now, actor, "permission.cancelled", request.id,
                             {"agent_id": agent_id, "service": request.service, "operation": request.operation,
                              "reason": AGENT_REVOKED})
                  for request in requests),
            ])
        return True

    # -- grants -----------------------------------------------------------------------------------

    async def add_grant(
        self,
        agent_id: str,
        service: str,
        operation: str | None,
        expires_at: float | None,
        granted_by: str,
        args_hash: str | None = None,
    ) -> Grant:
        grant = Grant(
            id=new_grant_id(),
            agent_id=agent_id,
            service=service,
            operation=operation,
            expires_at=expires_at,
            granted_by=granted_by,
            granted_at=self.clock(),
            args_hash=args_hash,
        )
        async with self._transaction() as db:
            async with db.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)) as cursor:
                if await cursor.fetchone() is None:
                    raise StoreError(f"unknown agent {agent_id!r}")
            await self._insert_grant(db, grant)
        return grant

    async def _insert_grant(self, db: aiosqlite.Connection, grant: Grant) -> None:
        await db.execute(
            f"INSERT INTO grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (grant.id, grant.agent_id, grant.service, grant.operation, grant.expires_at,
             grant.granted_by, grant.granted_at, None, grant.args_hash, None),
        )
        detail: dict[str, Any] = {"service": grant.service, "operation": grant.operation or "*",
                                  "expires_at": grant.expires_at, "agent_id": grant.agent_id,
                                  "once": grant.args_hash is not None}
        await self._insert_audit(db, [AuditEvent(grant.granted_at, grant.granted_by, "grant.added", grant.id,
                                                 detail)])

    async def list_grants(self, agent_id: str | None = None, active_only: bool = True) -> list[Grant]:
        clauses: list[str] = []
        params: list[Any] = []
        if agent_id is not None:
            clauses.append("agent_id = ?")
            params.append(agent_id)
        if active_only:
            clauses.append("revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)")
            params.append(self.clock())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self._db.execute(
            f"SELECT {_GRANT_COLUMNS} FROM grants{where} ORDER BY granted_at", params
        ) as cursor:
            return [Grant(*row) for row in await cursor.fetchall()]

    async def revoke_grant(self, grant_id: str, actor: str, action: str = "grant.revoked") -> Grant | None:
        """Ends a grant (`action` "grant.used" when a one-time approval is spent by its call)."""
        now = self.clock()
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
                (now, actor, grant_id),
            )
            if cursor.rowcount == 0:
                return None
            await self._insert_audit(db, [AuditEvent(now, actor, action, grant_id)])
            async with db.execute(f"SELECT {_GRANT_COLUMNS} FROM grants WHERE id = ?", (grant_id,)) as rows:
                row = await rows.fetchone()
        return Grant(*row) if row else None

    async def grant_ends(self, grant_ids: Sequence[str]) -> dict[str, tuple[float | None, float | None]]:
        """Each of these grants' (expires_at, revoked_at): None where it has no time limit, or stands."""
        if not grant_ids:
            return {}
        marks = ",".join("?" * len(grant_ids))
        async with self._db.execute(f"SELECT id, expires_at, revoked_at FROM grants WHERE id IN ({marks})",
                                    grant_ids) as cursor:
            return {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}

    async def get_grant(self, grant_id: str) -> Grant | None:
        async with self._db.execute(f"SELECT {_GRANT_COLUMNS} FROM grants WHERE id = ?", (grant_id,)) as cursor:
            row = await cursor.fetchone()
        return Grant(*row) if row else None

    # -- operators ----------------------------------------------------------------------------------

    async def add_operator(self, operator_id: str, name: str, token_hash: str, actor: str) -> Operator:
        operator = Operator(operator_id, name, self.clock())
        async with self._transaction() as db:
            await db.execute("INSERT INTO operators (id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                             (operator.id, operator.name, token_hash, operator.created_at))
            await self._insert_audit(db, [AuditEvent(operator.created_at, actor, "operator.added", operator.id,
                                                     {"name": name})])
        return operator

    async def list_operators(self, include_revoked: bool = True) -> list[Operator]:
        sql = "SELECT id, name, created_at, revoked_at FROM operators"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        async with self._db.execute(sql + " ORDER BY created_at") as cursor:
            return [Operator(*row) for row in await cursor.fetchall()]

    async def active_operators_by_token_hash(self) -> dict[str, Operator]:
        async with self._db.execute(
            "SELECT token_hash, id, name, created_at, revoked_at FROM operators WHERE revoked_at IS NULL"
        ) as cursor:
            return {row[0]: Operator(*row[1:]) for row in await cursor.fetchall()}

    async def revoke_operator(self, operator_id: str, actor: str) -> bool:
        """Revokes an operator's token (audited); False when there is no such operator in force."""
        now = self.clock()
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE operators SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, operator_id))
            if cursor.rowcount == 0:
                return False
            await self._insert_audit(db, [AuditEvent(now, actor, "operator.revoked", operator_id)])
        return True

    async def operator_by_token_hash(self, token_hash: str) -> Operator | None:
        async with self._db.execute(
            "SELECT id, name, created_at, revoked_at FROM operators WHERE token_hash = ? AND revoked_at IS NULL",
            (token_hash,),
        ) as cursor:
            row = await cursor.fetchone()
        return Operator(*row) if row else None

    # -- permission requests ------------------------------------------------------------------------

    async def file_permission_request(
        self, agent_id: str, service: str, operation: str | None, args_hash: str | None, risk: str | None,
        reason: str, params_preview: Any, ttl_seconds: float,
    ) -> tuple[PermissionRequest, bool]:
        """A new pending request, or the pending one for the same agent, service and operation (False)."""
        now = self.clock()
        async with self._transaction() as db:
            async with db.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM permission_requests WHERE agent_id = ? AND service = ? "
                "AND COALESCE(operation, '') = ? AND status = 'pending'", (agent_id, service, operation or ""),
            ) as cursor:
                row = await cursor.fetchone()
            if row is not None:
                return _request(row), False
            request = PermissionRequest(f"perm_req_{uuid.uuid4().hex}", agent_id, service, operation, args_hash,
                                        risk, reason, params_preview, "pending", now, now + ttl_seconds)
            await db.execute(
                f"INSERT INTO permission_requests ({_REQUEST_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (request.id, agent_id, service, operation, args_hash, risk, reason,
                 json.dumps(params_preview) if params_preview is not None else None, "pending", now,
                 request.expires_at, None, None, None, None, None),
            )
            await self._insert_audit(db, [AuditEvent(now, f"agent:{agent_id}", "permission.requested", request.id,
                                                     {"service": service, "operation": operation})])
        return request, True

    async def get_permission_request(self, request_id: str) -> PermissionRequest | None:
        async with self._db.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM permission_requests WHERE id = ?", (request_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _request(row) if row else None

    async def list_permission_requests(self, status: str | None = None, limit: int = 500,
                                       after: tuple[float, str] | None = None) -> list[PermissionRequest]:
        """With `status`: up to `limit` such requests in creation order, (created_at, id) past `after` (a
        keyset page: nothing skipped or repeated as requests come and go). Without: decided, newest first."""
        params: tuple[Any, ...]
        if status is None:
            sql, params = (f"SELECT {_REQUEST_COLUMNS} FROM permission_requests WHERE status != 'pending' "
                           "ORDER BY COALESCE(decided_at, created_at) DESC LIMIT ?"), (limit,)
        else:
            created_at, request_id = after or (float("-inf"), "")
            sql, params = (f"SELECT {_REQUEST_COLUMNS} FROM permission_requests WHERE status = ? "
                           "AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?"), (
                               status, created_at, request_id, limit)
        async with self._db.execute(sql, params) as cursor:
            return [_request(row) for row in await cursor.fetchall()]

    async def decide_permission_request(
        self, request_id: str, approved: bool, decided_by: str, reason: str | None, scope: Scope,
        grant_expires_at: float | None,
    ) -> tuple[PermissionRequest, Grant | None]:
        """Records the first decision and, for an approval, its grant, in one transaction."""
        now = self.clock()
        async with self._transaction() as db:
            async with db.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM permission_requests WHERE id = ?", (request_id,)
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise UnknownPermissionRequest(f"no permission request {request_id!r}")
            request = _request(row)
            if request.status != "pending":
                raise AlreadyDecided(request)
            grant = None
            if approved:
                grant = Grant(
                    id=new_grant_id(), agent_id=request.agent_id, service=request.service,
                    operation=None if scope == "service" else request.operation,
                    expires_at=grant_expires_at, granted_by=decided_by, granted_at=now,
                    args_hash=request.args_hash if scope == "once" else None,
                )
                await self._insert_grant(db, grant)
            status = "approved" if approved else "denied"
            await db.execute(
                "UPDATE permission_requests SET status = ?, decided_at = ?, decided_by = ?, decision_reason = ?, "
                "scope = ?, grant_id = ? WHERE id = ?",
                (status, now, decided_by, reason, scope if approved else None, grant.id if grant else None,
                 request_id),
            )
            await self._insert_audit(db, [AuditEvent(now, decided_by, f"permission.{status}", request_id,
                                                     {"agent_id": request.agent_id, "service": request.service,
                                                      "operation": request.operation, "scope": scope,
                                                      "reason": reason})])
        decided = await self.get_permission_request(request_id)
        assert decided is not None
        return decided, grant

    async def expire_permission_requests(self, now: float) -> list[PermissionRequest]:
        async with self._transaction() as db:
            async with db.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM permission_requests WHERE status = 'pending' AND expires_at <= ?",
                (now,),
            ) as cursor:
                expired = [_request(row) for row in await cursor.fetchall()]
            for request in expired:
                await db.execute("UPDATE permission_requests SET status = 'expired', decided_at = ?, "
                                 "decided_by = 'orchestrator' WHERE id = ?", (now, request.id))
            await self._insert_audit(db, [AuditEvent(now, "orchestrator", "permission.expired", request.id,
                                                     {"agent_id": request.agent_id, "service": request.service})
                                          for request in expired])
        return [await self.get_permission_request(request.id) or request for request in expired]

    async def audit_seq(self) -> int:
        """The last audit row's sequence number (0 for none): where `ended_since` starts from."""
        async with self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def ended_since(self, seq: int) -> tuple[int, list[PermissionRequest | Grant]]:
        """Requests ended (expired, cancelled) and grants ended (revoked, used) after audit row `seq`, by
        any process on this store, in the order they ended; and the last audit row looked at."""
        placeholders = ", ".join("?" for _ in _ENDING_ACTIONS)
        async with self._db.execute(
            f"SELECT seq, action, subject FROM audit WHERE seq > ? AND action IN ({placeholders}) ORDER BY seq",
            (seq, *_ENDING_ACTIONS),
        ) as cursor:
            rows = list(await cursor.fetchall())
        ended: list[PermissionRequest | Grant] = []
        for _, action, subject in rows:
            found = (await self.get_permission_request(subject) if action.startswith("permission.")
                     else await self.get_grant(subject))
            if found is not None:
                ended.append(found)
        return (rows[-1][0] if rows else seq), ended

    # -- the calls ledger and the audit log -------------------------------------------------------

    async def append(self, calls: Sequence[CallRecord], audit: Sequence[AuditEvent] = ()) -> None:
        """Writes a batch of ledger rows and audit events in one transaction."""
        if not calls and not audit:
            return
        async with self._transaction() as db:
            if calls:
                await db.executemany(
                    f"INSERT INTO calls ({_CALL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(c.id, c.ts, c.agent_id, c.method, c.service, c.operation, c.status, c.error_code,
                      c.duration_ms, c.tokens, c.cost_usd, c.rpc_id, c.permission_request_id, c.via)
                     for c in calls],
                )
            if audit:
                await self._insert_audit(db, audit)

    async def append_audit(self, event: AuditEvent) -> None:
        await self.append((), (event,))

    @staticmethod
    async def _insert_audit(db: aiosqlite.Connection, events: Iterable[AuditEvent]) -> None:
        await db.executemany(
            "INSERT INTO audit (ts, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
            [(e.ts, e.actor, e.action, e.subject, json.dumps(e.detail, sort_keys=True)) for e in events],
        )

    # -- the MCP upstreams' tool lists -----------------------------------------------------------------

    async def save_mcp_tools(self, service: str, tools_json: str) -> None:
        """The tools an MCP upstream listed (the listing's JSON), replacing what was kept for it."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO mcp_tool_cache (service, listed_at, tools_json) VALUES (?, ?, ?) "
                             "ON CONFLICT (service) DO UPDATE SET listed_at = excluded.listed_at, "
                             "tools_json = excluded.tools_json", (service, self.clock(), tools_json))

    async def mcp_tools(self) -> dict[str, tuple[float, str]]:
        """Every MCP upstream's last listing: service → (when, the listing's JSON)."""
        async with self._db.execute("SELECT service, listed_at, tools_json FROM mcp_tool_cache") as cursor:
            return {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}

    async def iter_calls(self, since: float | None = None, batch: int = 1000) -> AsyncIterator[CallRecord]:
        """All ledger rows in the order they were written, read in pages (never all in memory)."""
        last_seq = 0
        while True:
            params: list[Any] = [last_seq]
            sql = f"SELECT seq, {_CALL_COLUMNS} FROM calls WHERE seq > ?"
            if since is not None:
                sql += " AND ts >= ?"
                params.append(since)
            async with self._db.execute(sql + f" ORDER BY seq LIMIT {int(batch)}", params) as cursor:
                rows = list(await cursor.fetchall())
            if not rows:
                return
            for row in rows:
                yield CallRecord(*row[1:])
            last_seq = rows[-1][0]

    async def recent_calls(self, limit: int = 100) -> list[CallRecord]:
        async with self._db.execute(
            f"SELECT {_CALL_COLUMNS} FROM calls ORDER BY seq DESC LIMIT ?", (limit,)
        ) as cursor:
            return [CallRecord(*row) for row in await cursor.fetchall()]

    async def usage_by_caller_since(self, since: float) -> dict[str | None, UsageTotals]:
        """Calls, errors, tokens and cost per agent (or operator) since `since`; None: no known caller."""
        async with self._db.execute(
            "SELECT agent_id, COUNT(*), SUM(status != 'success'), SUM(tokens), SUM(cost_usd) FROM calls "
            "WHERE ts >= ? GROUP BY agent_id",
            (since,),
        ) as cursor:
            return {row[0]: UsageTotals(int(row[1]), int(row[2]), int(row[3]), float(row[4]))
                    for row in await cursor.fetchall()}

    async def list_audit(self, limit: int = 200) -> list[AuditEvent]:
        async with self._db.execute(
            "SELECT ts, actor, action, subject, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
        ) as cursor:
            return [AuditEvent(row[0], row[1], row[2], row[3], json.loads(row[4]))
                    for row in await cursor.fetchall()]
