"""Rows of the store as plain immutable records (cheap to build on the request path)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, cast, get_args

from gateway_core.redaction import printable

# Why a call was refused at the permission step (-32004 data.status); the ledger records it as the call's status.
RefusalStatus = Literal[
    "pending",  # a request was filed (or one already was); the call was not held
    "timed_out",  # held, and no decision came within the wait
    "denied",  # an operator denied it, or there is no grant and nobody to ask
    "expired",  # the request expired undecided
    "cancelled",  # the request ended because its agent was revoked
    "unknown_agent",  # the orchestrator does not know (or accept) this agent id
    "cannot_grant_once",  # [policy] always_ask needs one-time approvals, which the orchestrator cannot grant
    "orchestrator_unavailable",  # the orchestrator could not be asked; nothing was filed
    "gateway_stopping",  # held when the gateway stopped; the request stays pending
    "read_only",  # an operator's write call from a read-only console
]
REFUSAL_STATUSES: frozenset[str] = frozenset(get_args(RefusalStatus))
CallStatus = Literal["success", "error"] | RefusalStatus
# How a call came in: JSON-RPC (`mcp.execute` and the listing methods), the slash form, an operator's console
# (embedded or attached), or the MCP front door.
CallVia = Literal["rpc", "slash", "console", "mcp"]
TEXT_LIMIT = 200  # characters of a caller's value (method, service, id...) the ledger and audit log keep


def ledger_text(value: object, limit: int = TEXT_LIMIT) -> str | None:
    """A caller's value as the ledger, the audit log and the console keep it: printable text of at most
    `limit` characters (what does not print, a lone surrogate too, written out: printable()). Whatever is not
    text (a list sent as `method`) is kept as its type's name; None stays None."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    if len(value) <= limit and value.isprintable():  # the usual case costs two C calls
        return value
    text = printable(value[:limit])  # cut first: a caller's text may be a megabyte
    return text[:limit] + ("…" if len(value) > limit or len(text) > limit else "")


def refusal_status(status: object) -> RefusalStatus:
    """A permission refusal's status as the ledger keeps it; anything unexpected counts as denied."""
    return cast(RefusalStatus, status) if status in REFUSAL_STATUSES else "denied"


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    name: str
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for an agent to use a service; `operation` None means the whole service."""

    id: str
    agent_id: str
    service: str
    operation: str | None
    expires_at: float | None
    granted_by: str
    granted_at: float
    revoked_at: float | None = None
    args_hash: str | None = None  # set for a one-time approval bound to one call's arguments
    revoked_by: str | None = None

    def active_at(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def covers(self, operation: str) -> bool:
        return self.operation is None or self.operation == operation


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of the calls ledger: every JSON-RPC request, answered or refused."""

    id: str
    ts: float
    agent_id: str | None
    method: str | None
    service: str | None
    operation: str | None
    status: CallStatus
    error_code: int | None
    duration_ms: float
    tokens: int
    cost_usd: float
    rpc_id: str | None
    permission_request_id: str | None = None
    via: CallVia = "rpc"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One append-only audit row: a security event (who did what to whom)."""

    ts: float
    actor: str
    action: str
    subject: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# "cancelled": ended undecided because its agent was revoked.
PermissionStatus = Literal["pending", "approved", "denied", "expired", "cancelled"]
Scope = Literal["once", "service", "operation"]


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    name: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class PermissionRequest:
    """An agent's request for a permission it lacks, and, once decided, the decision."""

    id: str
    agent_id: str
    service: str
    operation: str | None
    args_hash: str | None
    risk: str | None
    reason: str
    params_preview: Any
    status: PermissionStatus
    created_at: float
    expires_at: float
    decided_at: float | None = None
    decided_by: str | None = None
    decision_reason: str | None = None
    scope: Scope | None = None
    grant_id: str | None = None


@dataclass(slots=True)
class UsageTotals:
    """Calls, errors, tokens and cost added up (per service, per caller, per day)."""

    calls: int = 0
    errors: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.errors += record.status != "success"
        self.tokens += record.tokens
        self.cost_usd += record.cost_usd

    def include(self, other: UsageTotals) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.tokens += other.tokens
        self.cost_usd += other.cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "tokens": self.tokens,
                "cost": round(self.cost_usd, 10)}
