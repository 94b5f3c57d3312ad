"""The operator API's wire shapes (under /operator on the gateway's port): what the gateway sends is built
from these models and what an attached console receives is parsed by the same ones. The ledger's, health
checks' and orchestrator's own records travel as they are (dataclasses and the orchestrator's models)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from gateway_core.health import HealthReport, HealthStatus
from gateway_core.models import ExecuteResult
from gateway_core.operations import Risk
from gateway_core.orchestrator.client import LinkState
from gateway_core.orchestrator.models import (
    DecidedRequest,
    GrantView,
    OrchestratorCapabilities,
    PermissionRequestEvent,
    PermissionResponseEvent,
    PermissionRevokedEvent,
)
from gateway_core.store import AuditEvent, CallRecord, UsageTotals
from gateway_core.upstream_tool import UpstreamTool

PREFIX = "/operator"
SNAPSHOT_PATH = f"{PREFIX}/snapshot"
EVENTS_PATH = f"{PREFIX}/events"
RUN_PATH = f"{PREFIX}/run"
DECIDE_PATH = f"{PREFIX}/decide"
REVOKE_PATH = f"{PREFIX}/revoke"
AUDIT_PATH = f"{PREFIX}/audit"
GRANTS_PATH = f"{PREFIX}/grants"
HISTORY_PATH = f"{PREFIX}/history"
AGENTS_PATH = f"{PREFIX}/agents"

# WebSocket close codes of the event stream (4000-4999 are the application's).
CLOSE_UNAUTHENTICATED = 4401  # no operator token, or one that is unknown or was revoked
CLOSE_STOPPING = 4503  # the gateway is stopping


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- the snapshot -------------------------------------------------------------------------------------


class ToolSnapshot(_Wire):
    """An MCP upstream's tool as the gateway lists it (an attached console has no declaration of its own for
    it): enough to make the same operation there."""

    name: str
    description: str
    risk: Risk
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any]

    @classmethod
    def of(cls, tool: UpstreamTool) -> ToolSnapshot:
        return cls(name=tool.name, description=tool.description, risk=tool.risk, input_schema=dict(tool.input_schema),
                   output_schema=None if tool.output_schema is None else dict(tool.output_schema),
                   annotations=dict(tool.annotations))

    def operation(self) -> UpstreamTool:
        """The same operation, made here."""
        return UpstreamTool.declare(self.name, self.description, self.input_schema, self.risk,
                                    output_schema=self.output_schema, annotations=self.annotations)


class ServiceSnapshot(_Wire):
    name: str
    description: str
    location: str
    status: HealthStatus
    health: HealthReport | None  # the last check; None before the first
    latency_history: list[float | None]  # oldest first; None: a failed check
    used: UsageTotals  # since the gateway started
    operations: list[str]  # what the gateway declares (an attached console uses its own build's declarations)
    tools: list[ToolSnapshot] = []  # an MCP upstream's operations: what it listed, as of the snapshot
    missing_settings: list[str]


class DaySnapshot(_Wire):
    """Today's usage (UTC), in all and by caller (agent id or `operator:<name>`)."""

    starts: float
    ends: float
    total: UsageTotals
    by_caller: dict[str, UsageTotals]


class OperatorSnapshot(_Wire):
    """Everything a console shows, as of event `seq`: the stream from `seq` on is what happened next."""

    seq: int
    instance: str  # this run of the gateway: a seq is only good for the run that numbered it
    version: str
    operator: str  # who the token belongs to (`alice`): what the console acts as
    address: str | None  # where agents reach the gateway
    services: list[ServiceSnapshot]
    today: DaySnapshot
    agents_served: int
    recent_calls: list[CallRecord]  # oldest first
    pending: list[PermissionRequestEvent]  # oldest first
    link: LinkState | None
    capabilities: OrchestratorCapabilities | None
    operators: list[str]  # the consoles attached now, by operator name


# -- the event stream --------------------------------------------------------------------------------


class CallEvent(_Wire):
    type: Literal["call"] = "call"
    seq: int
    record: CallRecord


class HealthEvent(_Wire):
    type: Literal["health"] = "health"
    seq: int
    service: str
    previous: HealthReport | None
    current: HealthReport


class PermissionFeedEvent(_Wire):
    type: Literal["permission"] = "permission"
    seq: int
    event: Annotated[PermissionRequestEvent | PermissionResponseEvent | PermissionRevokedEvent,
                     Field(discriminator="type")]


class ToolsEvent(_Wire):
    """An MCP upstream's new listing: its tools, all of them, as in the snapshot."""

    type: Literal["tools"] = "tools"
    seq: int
    service: str
    tools: list[ToolSnapshot]


class LinkEvent(_Wire):
    type: Literal["link"] = "link"
    seq: int
    state: LinkState
    capabilities: OrchestratorCapabilities | None


class OperatorsEvent(_Wire):
    type: Literal["operators"] = "operators"
    seq: int
    attached: list[str]


OperatorEvent = Annotated[CallEvent | HealthEvent | PermissionFeedEvent | ToolsEvent | LinkEvent | OperatorsEvent,
                          Field(discriminator="type")]
OPERATOR_EVENT = TypeAdapter[Any](OperatorEvent)


class EventBatch(_Wire):
    """One WebSocket message: events in order, each seq one more than the last."""

    type: Literal["events"] = "events"
    events: list[OperatorEvent]


class Resync(_Wire):
    """The events after the asked-for seq are no longer kept: fetch a new snapshot and resume from it."""

    type: Literal["resync"] = "resync"
    oldest: int  # the oldest seq still kept


StreamMessage = Annotated[EventBatch | Resync, Field(discriminator="type")]
STREAM_MESSAGE = TypeAdapter[EventBatch | Resync](StreamMessage)


# -- actions and queries --------------------------------------------------------------------------------


class RunBody(_Wire):
    service: str
    operation: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    read_only: bool = False  # the console chose to be a viewer: the gateway holds it to that


class RunError(_Wire):
    code: int
    message: str
    data: dict[str, Any] | None = None


class RunAnswer(_Wire):
    """An operation's ledger row and either its result or its error (as an agent would get it)."""

    record: CallRecord
    result: ExecuteResult | None = None
    error: RunError | None = None


class RevokeBody(_Wire):
    grant_id: str = Field(min_length=1, max_length=128)


class AuditPage(_Wire):
    events: list[AuditEvent]


class GrantPage(_Wire):
    grants: list[GrantView]


class HistoryPage(_Wire):
    decisions: list[DecidedRequest]


class AgentNames(_Wire):
    names: dict[str, str]  # agent id → name
    served: int  # the agents whose tokens work now


class OperatorProblem(_Wire):
    """Any refusal on the operator API: what went wrong, in words, and a short kind to act on."""

    error: Literal["unauthenticated", "invalid", "conflict", "unknown_request", "unknown_grant", "not_supported",
                   "orchestrator_unavailable", "route_missing", "too_large", "not_found"]
    message: str
    first: dict[str, Any] | None = None  # conflict: the decision that stands
