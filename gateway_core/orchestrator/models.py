"""The orchestrator's wire shapes (orchestrator-protocol.md): what our orchestrator sends is built from these
models and what the client receives is parsed by the same ones, so a field cannot drift. Parsing is
tolerant of both orchestrators: ours sends ISO-8601 UTC, the external one float epoch seconds or naive
local ISO strings."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from gateway_core.clock import iso_utc
from gateway_core.operations import Risk
from gateway_core.store.records import PermissionStatus, Scope

log = logging.getLogger(__name__)

# Sent with the gateway's internal token: ours audits the decision or revocation under this operator.
ACTING_OPERATOR_HEADER = "x-acting-operator"


def _to_utc(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        # A naive time is the external orchestrator's local time, which astimezone assumes for it.
        return parsed.astimezone(UTC)
    return value


# Read in any of the shapes above (a float epoch included: ours builds events from the store's times);
# written as ISO-8601 UTC with milliseconds.
Timestamp = Annotated[datetime, BeforeValidator(_to_utc),
                      PlainSerializer(lambda moment: iso_utc(moment.timestamp()), return_type=str, when_used="json")]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")


# How the gateway words a request's reason: the operation is read back from it where an event lacks one.
_REASON_OPERATION = re.compile(r"attempted to use \S+ for operation: (\S{1,128})\s*$")


class PermissionRequestEvent(_Event):
    type: Literal["mcp_permission_request"] = "mcp_permission_request"
    request_id: str
    agent_id: str
    agent_name: str | None = None
    service_name: str
    reason: str | None = None
    timestamp: Timestamp | None = None
    operation: str | None = None
    params_preview: Any = None
    risk: Risk | None = None
    expires_at: Timestamp | None = None

    @model_validator(mode="after")
    def _operation_from_reason(self) -> PermissionRequestEvent:
        # The external orchestrator drops `operation` (and names requests by the second): without it, two
        # requests of one agent for one service could not be told apart.
        if self.operation is None and self.reason:
            found = _REASON_OPERATION.search(self.reason)
            self.operation = found.group(1) if found else None
        return self


Decision = Literal["approved", "denied", "expired", "cancelled"]


class PermissionResponseEvent(_Event):
    type: Literal["mcp_permission_response"] = "mcp_permission_response"
    request_id: str
    agent_id: str | None = None
    service_name: str | None = None
    operation: str | None = None  # ours
    approved: bool
    reason: str | None = None
    timestamp: Timestamp | None = None
    scope: Scope | None = None
    expires_at: Timestamp | None = None
    decided_by: str | None = None
    status: Decision | None = None  # ours; "cancelled": the agent was revoked

    @property
    def final_status(self) -> Decision:
        return self.status or ("approved" if self.approved else "denied")


class PermissionRevokedEvent(_Event):
    type: Literal["mcp_permission_revoked"] = "mcp_permission_revoked"
    grant_id: str
    agent_id: str | None = None
    service_name: str | None = None
    operation: str | None = None  # None: the whole service
    revoked_by: str | None = None
    timestamp: Timestamp | None = None


class ConnectionEstablished(_Event):
    type: Literal["connection_established"] = "connection_established"
    client_id: str | None = None
    timestamp: Timestamp | None = None
    message: str | None = None


class Heartbeat(_Event):
    type: Literal["heartbeat", "ping"] = "heartbeat"
    timestamp: Timestamp | None = None
    active_connections: int | None = None


EVENT_MODELS = (PermissionRequestEvent, PermissionResponseEvent, PermissionRevokedEvent, ConnectionEstablished,
                Heartbeat)
OrchestratorEvent = Annotated[
    PermissionRequestEvent | PermissionResponseEvent | PermissionRevokedEvent | ConnectionEstablished | Heartbeat,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter[Any](OrchestratorEvent)
KNOWN_TYPES = frozenset(kind for model in EVENT_MODELS for kind in get_args(model.model_fields["type"].annotation))


def parse_event(frame: str | bytes) -> Any | None:
    """A known event, or None for frames we don't use (the external orchestrator sends ~15 other types)."""
    try:
        payload = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        log.debug("orchestrator sent a frame that is not JSON; ignored")
        return None
    if not isinstance(payload, dict) or payload.get("type") not in KNOWN_TYPES:
        return None
    try:
        return _EVENT.validate_python(payload)
    except ValidationError as exc:
        log.warning("orchestrator sent a malformed %s event (%d problems); ignored", payload["type"],
                    exc.error_count())
        return None


# -- REST bodies ------------------------------------------------------------------------------------


MAX_PREVIEW_BYTES = 64 * 1024
MAX_GRANT_SECONDS = 10 * 366 * 86_400  # ten years: longer is "no expiry", which null already says
MAX_REASON_CHARS = 2000


def _storable_preview(preview: Any) -> Any:
    """A preview is stored and sent to every operator: it must be JSON in valid UTF-8, and small."""
    try:
        size = len(json.dumps(preview, ensure_ascii=False).encode())
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError):
        raise ValueError("params_preview must be JSON text in valid UTF-8") from None
    if size > MAX_PREVIEW_BYTES:
        raise ValueError(f"params_preview is over {MAX_PREVIEW_BYTES} bytes")
    return preview


class PermissionRequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    agent_id: str = Field(min_length=1, max_length=128)
    service_name: str = Field(min_length=1, max_length=64)
    reason: str = Field(max_length=MAX_REASON_CHARS)
    timestamp: str
    operation: str | None = Field(None, max_length=128)
    params_preview: Annotated[Any, AfterValidator(_storable_preview)] = None
    risk: Risk | None = None
    args_hash: str | None = Field(None, max_length=128)  # ours: binds a one-time approval to these arguments


class PermissionRespondBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str = Field(min_length=1)
    approved: bool
    reason: str | None = Field(None, max_length=MAX_REASON_CHARS)
    scope: Scope | None = None
    expires_in_seconds: float | None = Field(None, gt=0, le=MAX_GRANT_SECONDS)
    # Ours records the authenticated operator and ignores this; the external orchestrator's clients send it.
    decided_by: str | None = Field(None, max_length=128)


class RequestFiled(BaseModel):
    status: Literal["success"] = "success"
    request_id: str = Field(min_length=1)
    message: str = "Permission request received and pending approval"


class Decided(BaseModel):
    """The answer to a respond."""

    status: Literal["success"] = "success"
    request_id: str
    approved: bool
    message: str = ""
    grant_id: str | None = None  # ours


class AlreadyDecidedAnswer(BaseModel):
    """409: the request was decided (or expired) before; this is the decision that stands."""

    detail: str
    request_id: str
    status: PermissionStatus
    approved: bool
    decided_by: str | None = None
    decided_at: Timestamp | None = None


class GrantRevoked(BaseModel):
    status: Literal["success"] = "success"
    grant_id: str
    message: str = "Grant revoked"


class OrchestratorCapabilities(BaseModel):
    """What an orchestrator can grant and list (ours: GET /api/mcp/capabilities)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["success"] = "success"
    scopes: list[Scope]  # what a respond's `scope` can grant
    expiry: bool  # a respond's `expires_in_seconds` is honoured
    pending_list: bool  # GET /api/mcp/permission-requests
    history: bool  # GET /api/mcp/permission-history
    grants: bool  # GET /api/mcp/grants and DELETE /api/mcp/grants/{id}
    audit: bool  # it audits decisions and revocations itself, under the operator who made them


# An orchestrator without the capabilities route, such as the external one: it grants whole services, forever.
WHOLE_SERVICE_ONLY = OrchestratorCapabilities(scopes=["service"], expiry=False, pending_list=False, history=False,
                                              grants=False, audit=False)


class OrchestratorHealth(BaseModel):
    status: Literal["healthy"] = "healthy"
    timestamp: Timestamp
    service: str = "orchestrator"


class PendingPage(BaseModel):
    """One page of our orchestrator's pending list, oldest first; `next_cursor` is null on the last page."""

    status: Literal["success"] = "success"
    requests: list[PermissionRequestEvent]
    next_cursor: str | None = None


class GrantView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    agent_id: str | None = None  # ours, when grants of every agent are listed
    service: str
    operations: list[str] = Field(default_factory=lambda: ["*"])
    expires_at: Timestamp | None = None
    granted_by: str | None = None
    granted_at: Timestamp | None = None
    args_hash: str | None = None
    revoked_at: Timestamp | None = None


class GrantList(BaseModel):
    status: Literal["success"] = "success"
    grants: list[GrantView]


class DecidedRequest(BaseModel):
    """One entry of our orchestrator's permission history: a request and what became of it."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["decision"] = "decision"
    request_id: str
    agent_id: str
    service_name: str
    operation: str | None = None
    risk: Risk | None = None
    params_preview: Any = None
    status: PermissionStatus
    scope: Scope | None = None
    decided_by: str | None = None
    reason: str | None = None  # the operator's, with a decision
    requested_at: Timestamp | None = None
    timestamp: Timestamp | None = None  # when it was decided
    expires_at: Timestamp | None = None  # when the grant it made ends
    revoked_at: Timestamp | None = None  # when that grant was revoked (the spec's history holds revocations)


class PermissionHistory(BaseModel):
    status: Literal["success"] = "success"
    history: list[DecidedRequest]


class AgentPermissions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["success"] = "success"
    agent_id: str
    agent_name: str | None = None
    allowed_mcps: list[str] = Field(default_factory=list)
    grants: list[GrantView] | None = None  # ours only


class AgentView(BaseModel):
    id: str
    name: str
    created_at: Timestamp
    active: bool


class AgentList(BaseModel):
    status: Literal["success"] = "success"
    agents: list[AgentView]


class NewAgent(BaseModel):
    """The answer to POST /api/agents: the only time the token is shown."""

    id: str
    name: str
    token: str


class NewAgentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    id: str | None = Field(None, max_length=128)
