"""Schema migrations, numbered; each applied once, in order, in its own transaction."""

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE TABLE grants (
            id TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL REFERENCES agents(id),
            service TEXT NOT NULL,
            operation TEXT,
            args_hash TEXT,
            expires_at REAL,
            granted_by TEXT NOT NULL,
            granted_at REAL NOT NULL,
            revoked_at REAL,
            revoked_by TEXT
        );
        CREATE INDEX grants_by_agent ON grants(agent_id, service);
        CREATE TABLE calls (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            ts REAL NOT NULL,
            agent_id TEXT,
            method TEXT,
            service TEXT,
            operation TEXT,
            status TEXT NOT NULL,
            error_code INTEGER,
            duration_ms REAL NOT NULL,
            tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            rpc_id TEXT,
            permission_request_id TEXT
        );
        CREATE INDEX calls_by_ts ON calls(ts);
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        -- The audit log is append-only: the database itself refuses edits and deletions.
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
        """,
    ),
    (
        2,
        """
        CREATE TABLE operators (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE TABLE permission_requests (
            id TEXT PRIMARY KEY,
            agent_id TEXT NOT NULL,
            service TEXT NOT NULL,
            operation TEXT,
            args_hash TEXT,
            risk TEXT,
            reason TEXT NOT NULL,
            params_preview TEXT,
            status TEXT NOT NULL DEFAULT 'pending',
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            decided_at REAL,
            decided_by TEXT,
            decision_reason TEXT,
            scope TEXT,
            grant_id TEXT
        );
        -- At most one pending request per agent, service and operation: the dedupe is the database's.
        CREATE UNIQUE INDEX one_pending_request ON permission_requests(agent_id, service, COALESCE(operation, ''))
            WHERE status = 'pending';
        CREATE INDEX requests_by_status ON permission_requests(status, expires_at);
        """,
    ),
)
