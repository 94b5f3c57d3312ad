"""Schema migrations, numbered; each applied once, in order, in its own transaction. A migration that stamps
rows reads the store's clock from the temporary table `_now` (column `ts`)."""

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
    (
        3,
        # Revoking an agent now ends its grants and pending requests: end those left by agents revoked before.
        """
        INSERT INTO audit (ts, actor, action, subject, detail)
            SELECT (SELECT ts FROM _now), 'migration', 'grant.revoked', grants.id,
                   json_object('agent_id', grants.agent_id, 'reason', 'the agent was revoked',
                               'service', grants.service)
            FROM grants JOIN agents ON agents.id = grants.agent_id
            WHERE agents.revoked_at IS NOT NULL AND grants.revoked_at IS NULL;
        UPDATE grants SET revoked_at = (SELECT ts FROM _now), revoked_by = 'migration'
            WHERE revoked_at IS NULL AND agent_id IN (SELECT id FROM agents WHERE revoked_at IS NOT NULL);
        INSERT INTO audit (ts, actor, action, subject, detail)
            SELECT (SELECT ts FROM _now), 'migration', 'permission.cancelled', requests.id,
                   json_object('agent_id', requests.agent_id, 'operation', requests.operation,
                               'reason', 'the agent was revoked', 'service', requests.service)
            FROM permission_requests AS requests JOIN agents ON agents.id = requests.agent_id
            WHERE agents.revoked_at IS NOT NULL AND requests.status = 'pending';
        UPDATE permission_requests SET status = 'cancelled', decided_at = (SELECT ts FROM _now),
                                       decided_by = 'migration', decision_reason = 'the agent was revoked'
            WHERE status = 'pending' AND agent_id IN (SELECT id FROM agents WHERE revoked_at IS NOT NULL);
        """,
    ),
    (
        4,
        # How each call came in (rows from before say JSON-RPC, the only way then), and the tools each MCP
        # upstream listed last, so the front door can list them before the upstream answers again.
        """
        ALTER TABLE calls ADD COLUMN via TEXT NOT NULL DEFAULT 'rpc';
        CREATE TABLE mcp_tool_cache (
            service TEXT PRIMARY KEY,
            listed_at REAL NOT NULL,
            tools_json TEXT NOT NULL
        );
        """,
    ),
)
