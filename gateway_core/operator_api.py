"""What an operator's console sees of a gateway and does to it, as one narrow interface.

`GatewayView` is all a console may use: what it reads (services with health and usage, today's usage, the
orchestrator link, the event stream, agent names, the audit log, grants and decisions) and what it does
(run an operation as its operator, decide a permission request, revoke a grant). `LocalGateway` implements
it over the runtime in the console's own process; `RemoteGateway` (operator_client.py) over a gateway's
operator API, for a console attached to it, so every screen works the same either way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway_core.errors import PermissionDenied
from gateway_core.events import Subscription, backlog
from gateway_core.gateway import ExecuteOutcome, OperatorCaller
from gateway_core.health import HealthReport, HealthStatus
from gateway_core.models import ExecuteParams
from gateway_core.operations import OperationTable
from gateway_core.orchestrator.client import LinkState, OrchestratorClient, RouteMissing
from gateway_core.orchestrator.models import (
    Decided,
    DecidedRequest,
    GrantView,
    OrchestratorCapabilities,
    PermissionRespondBody,
)
from gateway_core.runtime import Runtime
from gateway_core.store import AuditEvent, UsageTotals
from gateway_core.usage import DailyUsage


@dataclass(frozen=True, slots=True)
class ServiceView:
    """One service as an operator sees it."""

    name: str
    description: str
    location: str
    status: HealthStatus
    health: HealthReport | None  # the last check; None before the first
    latency_history: tuple[float | None, ...]  # the recent checks' latencies, oldest first (None: failed)
    used: UsageTotals  # since the gateway started
    operations: OperationTable
    missing_settings: tuple[str, ...]

    @property
    def configured(self) -> bool:
        return self.status != "not_configured"


class GatewayView(Protocol):
    """The console's one way to a gateway. Reads are current state (cheap, no I/O); queries and actions are
    awaited. Actions run as `operator`, and a read-only operator's are refused by the gateway."""

    @property
    def operator(self) -> OperatorCaller: ...

    @property
    def address(self) -> str | None:
        """Where agents reach the gateway (host:port), or None when it serves none."""

    @property
    def attached_to(self) -> str | None:
        """For a gateway elsewhere, where (host:port): quitting the console leaves it serving. None: the
        gateway runs in the console's process and stops with it."""

    @property
    def attachment(self) -> LinkState | None:
        """The state of the stream from a gateway elsewhere; None for the gateway in this process."""

    @property
    def link(self) -> LinkState | None:
        """The orchestrator feed's state; None when no orchestrator is linked."""

    @property
    def capabilities(self) -> OrchestratorCapabilities | None:
        """What the linked orchestrator can grant and list; None before it was asked (or with none linked)."""

    def services(self) -> Sequence[ServiceView]: ...

    def today(self) -> DailyUsage: ...

    def agents_served(self) -> int:
        """How many agents hold a token that works now."""

    def operators_attached(self) -> tuple[str, ...]:
        """The operators whose consoles watch the gateway now (this one included), a name per console."""

    def subscribe(self) -> Subscription:
        """The recent calls and the pending requests first, then every finished call, health check, permission
        event, new tool listing, link change and console attached or gone, from now on."""

    async def agent_names(self) -> dict[str, str]: ...

    async def audit(self, limit: int) -> list[AuditEvent]:
        """The newest audit events, newest first, including what was recorded a moment ago."""

    async def grants(self) -> list[GrantView]:
        """Grants in force; RouteMissing where the orchestrator cannot list them."""

    async def history(self, limit: int) -> list[DecidedRequest]:
        """Decided requests, newest first; RouteMissing where the orchestrator keeps none."""

    async def run(self, service: str, operation: str, arguments: dict[str, Any]) -> ExecuteOutcome:
        """The operator's own call, through the gateway's pipeline (costed, recorded, audited)."""

    async def decide(self, body: PermissionRespondBody) -> Decided:
        """Decides as the operator. DecisionNotSupported for what the orchestrator cannot grant (nothing sent);
        DecisionConflict, UnknownRequest, OrchestratorUnavailable as the orchestrator answers."""

    async def revoke(self, grant_id: str) -> None: ...


class LocalGateway:
    """GatewayView over a runtime in this process; counted as an attached console while it lives."""

    attached_to = None
    attachment = None

    def __init__(self, runtime: Runtime, operator: OperatorCaller) -> None:
        self._runtime = runtime
        self._gateway = runtime.gateway
        self._operator = operator
        self._gateway.operator_feed.attach(operator.login)

    @property
    def operator(self) -> OperatorCaller:
        return self._operator

    @property
    def address(self) -> str | None:
        url = self._runtime.gateway_url
        return url.removeprefix("http://") if url else None

    @property
    def link(self) -> LinkState | None:
        return self._gateway.link_state

    @property
    def capabilities(self) -> OrchestratorCapabilities | None:
        return self._gateway.permissions.capabilities

    def services(self) -> list[ServiceView]:
        gateway = self._gateway
        return [ServiceView(name, state.spec.description, state.spec.location, gateway.service_status(name),
                            gateway.health.reports.get(name), tuple(gateway.health.latency_history.get(name, ())),
                            gateway.usage.by_service.get(name) or UsageTotals(), state.operations,
                            tuple(state.missing_settings))
                for name, state in gateway.services.items()]

    def today(self) -> DailyUsage:
        return self._gateway.usage.today

    def agents_served(self) -> int:
        return self._gateway.authenticator.active_agent_count

    def operators_attached(self) -> tuple[str, ...]:
        return self._gateway.operator_feed.attached

    def subscribe(self) -> Subscription:
        feed, gate = self._gateway.operator_feed, self._gateway.permissions
        return self._gateway.events.subscribe(backlog=backlog(feed.recent_calls, gate.pending))

    async def agent_names(self) -> dict[str, str]:
        return {agent.id: agent.name for agent in await self._gateway.store.list_agents()}

    async def audit(self, limit: int) -> list[AuditEvent]:
        await self._gateway.recorder.flush()  # what just happened belongs in the answer too
        return await self._gateway.store.list_audit(limit)

    async def grants(self) -> list[GrantView]:
        return await self._orchestrator().list_grants()

    async def history(self, limit: int) -> list[DecidedRequest]:
        return await self._orchestrator().permission_history(limit)

    async def run(self, service: str, operation: str, arguments: dict[str, Any]) -> ExecuteOutcome:
        params = ExecuteParams(service=service, operation=operation, args=arguments)
        return await self._gateway.execute_as_operator(self._operator, params)

    async def decide(self, body: PermissionRespondBody) -> Decided:
        self._refuse_if_read_only("decide permission requests")
        return await self._gateway.permissions.decide(
            body.request_id, body.approved, operator_id=self._operator.caller_id, reason=body.reason,
            scope=body.scope, expires_in_seconds=body.expires_in_seconds)

    async def revoke(self, grant_id: str) -> None:
        self._refuse_if_read_only("revoke grants")
        await self._gateway.permissions.revoke(grant_id, operator_id=self._operator.caller_id)

    def _refuse_if_read_only(self, what: str) -> None:
        if self._operator.read_only:
            raise PermissionDenied(f"This console is read-only: it cannot {what}", {"status": "read_only"})

    def _orchestrator(self) -> OrchestratorClient:
        orchestrator = self._gateway.orchestrator
        if orchestrator is None:
            raise RouteMissing("no orchestrator is linked")
        return orchestrator
