"""The Gateway: the execution pipeline of gateway-protocol.md, and the event stream for UIs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from gateway_core import __version__
from gateway_core.auth import OPERATOR_PREFIX, Authenticator, TokenHasher, open_token_hasher
from gateway_core.catalog import DEFAULT_CATALOG, Catalog, ServiceSpec
from gateway_core.clock import Clock, iso_utc, system_clock
from gateway_core.config import Settings
from gateway_core.cost import catalog_cost, measured_cost
from gateway_core.errors import (
    BudgetExceeded,
    GatewayError,
    InternalError,
    OperationNotSupported,
    PermissionDenied,
    RateLimitExceeded,
    ServiceNotFound,
    ServiceUnavailable,
    UpstreamTimeout,
)
from gateway_core.events import CallFinished, EventBus, HealthChecked, ToolsListed
from gateway_core.handlers import HANDLER_CLASSES, ServiceHandler
from gateway_core.handlers.caller import serving
from gateway_core.health import HealthMonitor, HealthReport, HealthStatus
from gateway_core.ids import time_ordered_uuid
from gateway_core.mcp_upstreams import (
    McpUpstreamHandler,
    UpstreamHooks,
    UpstreamLaunch,
    resolve_upstreams,
    upstream_specs,
)
from gateway_core.metrics import GatewayMetrics
from gateway_core.models import (
    OPERATOR_METHOD,
    RECORDED_METHODS,
    CallMetadata,
    Capability,
    CatalogListing,
    ExecuteParams,
    ExecuteResult,
    HealthView,
    Pricing,
    RateLimitView,
    ServiceCount,
    ServiceDescription,
    ServiceSummary,
    Statistics,
    UsageSummary,
)
from gateway_core.operations import Operation, OperationArgs, OperationTable
from gateway_core.operator_feed import OperatorFeed
from gateway_core.orchestrator.client import LinkState, OrchestratorClient
from gateway_core.permission_gate import PermissionGate, WaitListener
from gateway_core.permissions import OrchestratorPolicy, PermissionPolicy, StoreGrantPolicy
from gateway_core.ratelimit import RateLimit, TokenBuckets
from gateway_core.recorder import Recorder
from gateway_core.redaction import AgentFacingScrubber
from gateway_core.store import AuditEvent, CallRecord, SQLiteStore
from gateway_core.store.records import CallStatus, CallVia, ledger_text, refusal_status
from gateway_core.upstream import load_client_library
from gateway_core.upstream_tool import ToolArguments, UpstreamTool, measured_chars
from gateway_core.usage import Usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceState:
    spec: ServiceSpec
    declared: OperationTable  # the handler class's declaration (nothing for an MCP upstream)
    handler: ServiceHandler | None
    missing_settings: list[str]
    has_handler: bool  # this build has code for the service

    @property
    def operations(self) -> OperationTable:
        """What the service serves now: its handler's table, which for an MCP upstream follows its listings."""
        return self.handler.live_operations() if self.handler is not None else self.declared

    @property
    def upstream(self) -> McpUpstreamHandler | None:
        return self.handler if isinstance(self.handler, McpUpstreamHandler) else None


@dataclass(frozen=True, slots=True)
class ExecuteOutcome:
    """A finished call: its ledger row and either its result or its error."""

    record: CallRecord
    result: ExecuteResult | None = None
    error: GatewayError | None = None


# What `Gateway.reload` takes from a config file read again: whole sections, or `section.field`.
RELOADABLE_SETTINGS = frozenset({"rate_limit", "budget", "cost", "upstream_timeout_seconds", "policy.always_ask",
                                 "policy.grant_cache_seconds", "permission.max_wait", "permission.refile_seconds",
                                 "permission.wait_seconds"})


def changed_settings(old: Settings, new: Settings) -> list[str]:
    """The settings that differ, by name: a section's fields one by one where one of them is reloadable."""
    changed = []
    for name in type(old).model_fields:
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if isinstance(before, BaseModel) and any(key.startswith(f"{name}.") for key in RELOADABLE_SETTINGS):
            changed += [f"{name}.{field}" for field in type(before).model_fields
                        if getattr(before, field) != getattr(after, field)]
        else:
            changed.append(name)
    return changed


@dataclass(frozen=True, slots=True)
class SettingsReload:
    applied: list[str]  # now in force
    kept: list[str]  # changed in the file, in force after a restart


@dataclass(frozen=True, slots=True)
class OperatorCaller:
    """An operator acting by hand (the console's Coolify screen): recorded as `operator:<login>`."""

    login: str
    read_only: bool = False

    @property
    def caller_id(self) -> str:
        return OPERATOR_PREFIX + self.login


class Gateway:
    """Owns the store, the handlers and the policy; `execute` runs one call through the pipeline."""

    def __init__(
        self,
        settings: Settings,
        store: SQLiteStore,
        hasher: TokenHasher,
        *,
        catalog: Catalog | None = None,
        handlers: Mapping[str, ServiceHandler] | None = None,
        handler_classes: Mapping[str, type[ServiceHandler]] | None = None,
        policy: PermissionPolicy | None = None,
        orchestrator: OrchestratorClient | None = None,
    ) -> None:
        """`handlers` are ready instances (always configured); `handler_classes` (default: every
        handler of this build) are built from the settings where their required settings are present."""
        self.settings = settings
        self.store = store
        self.clock = store.clock  # the runtime's one clock, given to the store where it was opened
        self.hasher = hasher
        catalog = catalog or Catalog(DEFAULT_CATALOG)
        self.catalog = catalog.extended(upstream_specs(settings, catalog))  # [mcp_servers] are services too
        self._health_checks: set[asyncio.Task[HealthReport]] = set()
        self._stopping = False
        self.services = self._build_services(handlers or {},
                                             HANDLER_CLASSES if handler_classes is None else handler_classes)
        self.authenticator = Authenticator(store, hasher, settings.auth.trust_agent_header,
                                           settings.auth.refresh_seconds)
        self.orchestrator = orchestrator
        self.scrubber = AgentFacingScrubber.from_settings(settings, [
            secret for state in self.services.values() if isinstance(state.handler, McpUpstreamHandler)
            for secret in state.handler.launch.secrets()])
        self.recorder = Recorder(store, settings.ledger.flush_interval_seconds)
        self.events = EventBus()
        self.metrics = GatewayMetrics(
            {name: state.operations for name, state in self.services.items() if state.upstream is None},
            RECORDED_METHODS,
            live_operations={name: state.upstream.live_operations for name, state in self.services.items()
                             if state.upstream is not None})
        self.permissions = PermissionGate(
            policy or (OrchestratorPolicy(orchestrator, settings.policy.grant_cache_seconds,
                                          settings.policy.always_ask, self.clock)
                       if orchestrator is not None else StoreGrantPolicy(store, settings.policy.grant_cache_seconds)),
            orchestrator, settings.permission.max_wait, self.recorder, self.metrics, self.events, self.clock,
            always_ask=settings.policy.always_ask, refile_seconds=settings.permission.refile_seconds,
            default_wait=settings.permission.wait_seconds)
        self.operator_feed = OperatorFeed(self.events, lambda: self.permissions.capabilities)
        self.health = HealthMonitor(
            {name: state.handler for name, state in self.services.items() if state.handler is not None},
            settings.health.interval_seconds,
            settings.health.timeout_seconds,
            self._health_checked,
            self.clock,
        )
        self._set_rate_limits(settings)
        self.usage = Usage(self.services, self.clock)
        self.started_at = self.clock()
        self._started_monotonic = time.monotonic()

    @property
    def link_state(self) -> LinkState | None:
        """The orchestrator feed's state; None when no orchestrator is linked."""
        return self.permissions.link_state

    @property
    def uptime_seconds(self) -> float:
        return time.monotonic() - self._started_monotonic

    @classmethod
    async def open(cls, settings: Settings, clock: Clock = system_clock, **kwargs: Any) -> Gateway:
        """A gateway on the store named by the settings (created if missing), not yet started."""
        store = await SQLiteStore.open(settings.store_path, clock)
        try:
            hasher = await open_token_hasher(store)
        except BaseException:
            await store.close()
            raise
        return cls(settings, store, hasher, **kwargs)

    def _build_services(
        self, handlers: Mapping[str, ServiceHandler], handler_classes: Mapping[str, type[ServiceHandler]]
    ) -> dict[str, ServiceState]:
        services: dict[str, ServiceState] = {}
        upstreams = resolve_upstreams(self.settings, self.catalog)
        hooks = UpstreamHooks(self.store, self.clock, lambda event: self.recorder.record_audit(event),
                              lambda service: self.metrics.mcp_upstream_restarts.labels(service).inc(),
                              self._upstream_state_changed, self._upstream_tools_changed,
                              self.settings.health.timeout_seconds)
        for name, spec in self.catalog.services.items():
            launch = upstreams.get(name)
            if launch is not None and name not in handlers:
                services[name] = ServiceState(
                    spec=spec, declared=OperationTable(()),
                    handler=McpUpstreamHandler(launch, spec, hooks) if isinstance(launch, UpstreamLaunch) else None,
                    missing_settings=[] if isinstance(launch, UpstreamLaunch) else launch.missing, has_handler=True)
                continue
            given = handlers.get(name)
            handler_class = type(given) if given is not None else handler_classes.get(name)
            missing = [] if given is not None else self.settings.missing_settings(spec)
            handler = given
            if handler is None and handler_class is not None and not missing:
                handler = handler_class.from_settings(self.settings, self.clock)
            services[name] = ServiceState(
                spec=spec,
                declared=handler_class.operations if handler_class is not None else OperationTable(()),
                handler=handler,
                missing_settings=missing,
                has_handler=handler_class is not None,
            )
        return services

    async def start(self) -> None:
        await self.authenticator.start()
        await self.usage.load_today(self.store)
        self.recorder.start()
        for state in self.services.values():
            if state.handler is not None:
                await state.handler.start()
        await load_client_library()  # before the first checks: their latency is the upstreams', not an import's
        self.health.start()
        await self.permissions.start()

    def _set_rate_limits(self, settings: Settings) -> None:
        self._agent_limits = TokenBuckets(settings.rate_limit.per_agent)
        self._service_limits = {
            name: TokenBuckets(settings.rate_limit.per_service.get(name, state.spec.rate_limit))
            for name, state in self.services.items()
        }

    def reload(self, new: Settings) -> SettingsReload:
        """Takes what can change while serving from `new` (a config file read again): rate limits (their
        buckets start full), the budget, cost, the policy, how long calls wait for a decision and the upstream
        timeout. Everything else keeps its running value until a restart; the answer names both, never values."""
        changed = changed_settings(self.settings, new)
        applied = [name for name in changed if name in RELOADABLE_SETTINGS]
        kept = [name for name in changed if name not in RELOADABLE_SETTINGS]
        if not applied:
            return SettingsReload(applied, kept)
        update: dict[str, Any] = {}
        for name in applied:
            section, _, field_name = name.partition(".")
            if field_name:
                update[section] = update.get(section, getattr(self.settings, section)).model_copy(
                    update={field_name: getattr(getattr(new, section), field_name)})
            else:
                update[section] = getattr(new, section)
        settings = self.settings = self.settings.model_copy(update=update)
        self._set_rate_limits(settings)
        policy = settings.policy
        self.permissions.policy.configure(policy.grant_cache_seconds, policy.always_ask)
        self.permissions.configure(settings.permission.max_wait, settings.permission.refile_seconds,
                                   policy.always_ask, settings.permission.wait_seconds)
        return SettingsReload(applied, kept)

    def begin_shutdown(self) -> None:
        """Answers every held call at once (-32004, status gateway_stopping), and any call held from now on;
        attached consoles are told the gateway is stopping."""
        self._stopping = True
        self.permissions.begin_shutdown()
        self.operator_feed.stop()

    async def aclose(self) -> None:
        """Stops background work, writes every pending ledger row, closes handlers and the store."""
        self.begin_shutdown()
        await self.health.stop()
        for check in self._health_checks:  # an upstream's state change asked for these: nobody reads them now
            check.cancel()
        await asyncio.gather(*self._health_checks, return_exceptions=True)
        # Every MCP upstream's child gone before the ledger's last write (the SDK stops each within ~6 s).
        await asyncio.gather(*(state.upstream.aclose() for state in self.services.values()
                               if state.upstream is not None))
        await self.permissions.aclose()
        await self.authenticator.aclose()
        await self.recorder.aclose()
        for state in self.services.values():
            if state.handler is not None and state.upstream is None:
                await state.handler.aclose()
        await self.store.close()

    # -- the pipeline -----------------------------------------------------------------------------

    async def execute_as_operator(self, operator: OperatorCaller, params: ExecuteParams) -> ExecuteOutcome:
        """An operator's own call: no permission is asked (the operator is who grants it), but it is rate
        limited, costed, recorded and audited like any agent's; a read-only operator may only read."""
        outcome = await self.execute(operator.caller_id, params, method=OPERATOR_METHOD, operator=operator,
                                     via="console")
        record = outcome.record
        self.recorder.record_audit(AuditEvent(
            record.ts, operator.caller_id, "operator.call", record.id,
            {"service": record.service, "operation": record.operation, "status": record.status,
             "error_code": record.error_code}))
        return outcome

    async def execute(
        self, agent_id: str, params: ExecuteParams, rpc_id: str | None = None, method: str = "mcp.execute",
        operator: OperatorCaller | None = None, via: CallVia = "rpc", on_wait: WaitListener | None = None,
    ) -> ExecuteOutcome:
        """One call through the pipeline, recorded as having come `via` that way. `on_wait` hears when the call
        starts to wait: for an operator (with the permission request's id), then for the upstream (None)."""
        started = time.perf_counter()
        service: str | None = params.service
        operation_name: str | None = params.operation
        request_id: str | None = None
        try:
            state = self._resolve_service(params.service)
            service = state.spec.name
            operation = await self._resolve_operation(state, params.operation)
            args = operation.parse_args(params.args, params.argument_defaults())
            handler = self._available_handler(state, operation)
            self._take_rate_limits(agent_id, state.spec)
            self._check_budget(agent_id)
            if operator is not None:
                if operator.read_only and operation.risk != "read":
                    raise PermissionDenied(f"This console is read-only: {operation.name} is a {operation.risk} "
                                           "operation", {"service": service, "operation": operation.name,
                                                         "status": "read_only"})
            elif not (state.spec.always_active and handler.needs_no_grant(agent_id, operation, args)):
                request_id = await self.permissions.check(agent_id, state.spec, operation, args,
                                                          params.options.waitForApproval, on_wait)
            if on_wait is not None:
                on_wait(None)
            data = await self._call(handler, state.spec, operation, args, agent_id)
            tokens, cost = self._cost(state.spec, operation, args, data)
        except GatewayError as error:
            self._scrub(error)
            status: CallStatus = "error"
            if isinstance(error, PermissionDenied):  # recorded as what the agent was told: pending, timed_out, ...
                status = refusal_status((error.data or {}).get("status"))
                request_id = (error.data or {}).get("requestId")
            record = self.record(agent_id=agent_id, method=method, service=service, operation=operation_name,
                                 status=status, error_code=error.code, started=started, rpc_id=rpc_id,
                                 permission_request_id=request_id, via=via)
            return ExecuteOutcome(record, error=error)
        record = self.record(agent_id=agent_id, method=method, service=service, operation=operation.name,
                             status="success", started=started, rpc_id=rpc_id, tokens=tokens, cost_usd=cost,
                             permission_request_id=request_id, via=via)
        # Built from values the gateway made itself: constructed, not validated again, on the hot path.
        metadata = CallMetadata.model_construct(
            executionTime=round(record.duration_ms), tokensUsed=tokens, cost=cost, service=state.spec.name,
            operation=operation.name, timestamp=iso_utc(record.ts), callId=record.id,
            database=self._database_of(operation, data))
        return ExecuteOutcome(record, result=ExecuteResult.model_construct(status="success", data=data,
                                                                           metadata=metadata))

    @staticmethod
    def _database_of(operation: Operation, data: dict[str, Any]) -> str | None:
        """metadata.database: for an operation that takes a database, the one the handler says it ran against."""
        database = data.get("database") if "database" in operation.args_model.model_fields else None
        return database if isinstance(database, str) else None

    def _scrub(self, error: GatewayError) -> None:
        """Our secrets and internal addresses out of what the agent will read (upstreams echo requests)."""
        error.message = self.scrubber.text(error.message)
        if error.data:
            error.data = self.scrubber.value(error.data)

    def operations_of(self, service: str) -> OperationTable:
        """A service's declared operations (none for a service this build has no handler for)."""
        return self.services[service].operations

    def _resolve_service(self, name: str) -> ServiceState:
        spec = self.catalog.resolve(name)
        if spec is None:
            raise ServiceNotFound(f"Service {name} not found", {"available": self.catalog.names()})
        return self.services[spec.name]

    async def _resolve_operation(self, state: ServiceState, name: str) -> Operation:
        if not state.has_handler:
            raise ServiceUnavailable(
                f"Service {state.spec.name} has no handler in this version of mcp-console",
                {"service": state.spec.name},
            )
        if state.spec.mcp_server:  # its operations are what it lists: first whether it can run at all
            self._available_handler(state, None)
        operation = state.operations.find(name)
        if operation is None and state.upstream is not None and not state.upstream.listed.is_set():
            # Never listed yet (its first start, or a lazy one): its first listing decides.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.mcp.first_list_wait_seconds):
                    await state.upstream.first_listing()
            if not state.upstream.listed.is_set():
                raise ServiceUnavailable(
                    f"Service {state.spec.name} has not listed its tools yet: "
                    f"{state.upstream.problem or 'it is still starting'}",
                    {"service": state.spec.name, "status": "starting"})
            operation = state.operations.find(name)
        if operation is None:
            raise OperationNotSupported(
                f"Operation {name} not supported by {state.spec.name}",
                {"service": state.spec.name, "availableOperations": list(state.operations)},
            )
        return operation

    def _available_handler(self, state: ServiceState, operation: Operation | None) -> ServiceHandler:
        if state.handler is None:
            missing = ", ".join(state.missing_settings)
            raise ServiceUnavailable(
                f"Service {state.spec.name} is not configured: set {missing}",
                {"service": state.spec.name, "status": "not_configured", "missingSettings": state.missing_settings},
            )
        report = self.health.reports.get(state.spec.name)
        if report is not None and report.status == "down" and (operation is None or operation.name != "health"):
            raise ServiceUnavailable(
                f"Service {state.spec.name} is down: {report.message}".rstrip(": "),
                {"service": state.spec.name, "status": "down"},
            )
        return state.handler

    def _take_rate_limits(self, agent_id: str, spec: ServiceSpec) -> None:
        retry_ms = self._agent_limits.take(agent_id)
        if retry_ms:
            self._refuse_rate(self._agent_limits.limit, f"agent:{agent_id}", retry_ms)
        service_limits = self._service_limits[spec.name]
        retry_ms = service_limits.take(agent_id)
        if retry_ms:
            self._agent_limits.give_back(agent_id)
            self._refuse_rate(service_limits.limit, f"agent:{agent_id}:service:{spec.name}", retry_ms)

    def _refuse_rate(self, limit: RateLimit, identifier: str, retry_ms: float) -> None:
        self.metrics.rate_limit_hits.inc()
        raise RateLimitExceeded(
            f"Rate limit exceeded for {identifier}: {limit.max_requests} calls per {limit.window_ms} ms",
            {"limit": limit.max_requests, "windowMs": limit.window_ms, "identifier": identifier,
             "retryAfterMs": max(1, round(retry_ms))},
        )

    def _check_budget(self, agent_id: str) -> None:
        budget = self.settings.budget.daily_usd_per_agent
        if budget is None:
            return
        spent = self.usage.spent_today(agent_id)
        if spent >= budget:
            raise BudgetExceeded(
                f"Agent {agent_id} has spent its daily budget of USD {budget:g}",
                {"agentId": agent_id, "budgetUsd": budget, "spentUsd": round(spent, 6), "period": "day"},
            )

    async def _call(
        self, handler: ServiceHandler, spec: ServiceSpec, operation: Operation, args: OperationArgs, caller: str
    ) -> dict[str, Any]:
        timeout = (handler.timeout_seconds or self.settings.upstream_timeout_seconds) + args.extra_seconds()
        active = self.metrics.active_requests.labels(spec.name)
        active.inc()
        try:
            async with asyncio.timeout(timeout):
                with serving(caller):  # for a handler that scopes by caller (mem0's user, minio's uploader)
                    return await handler.execute(operation, args)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{spec.name} did not answer {operation.name} within {timeout:g} s",
                {"service": spec.name, "operation": operation.name, "timeoutSeconds": timeout},
            ) from None
        except GatewayError:
            raise
        except Exception:
            correlation_id = uuid.uuid4().hex[:12]
            log.exception("internal error %s in %s.%s", correlation_id, spec.name, operation.name)
            raise InternalError(f"Internal error (correlation id {correlation_id})",
                                {"correlationId": correlation_id}) from None
        finally:
            active.dec()

    def _cost(
        self, spec: ServiceSpec, operation: Operation, args: OperationArgs, data: dict[str, Any]
    ) -> tuple[int, float]:
        if self.settings.cost.mode == "catalog":
            return catalog_cost(spec, operation, data)
        if isinstance(operation, UpstreamTool) and isinstance(args, ToolArguments):
            return measured_cost(self.settings.cost, measured_chars(args.arguments, data), 0)
        request_chars = len(args.model_dump_json())
        response_chars = len(json.dumps(data, default=str))
        return measured_cost(self.settings.cost, request_chars, response_chars)

    # -- recording ---------------------------------------------------------------------------------

    def record(
        self, *, agent_id: str | None, method: object, service: object = None, operation: object = None,
        status: CallStatus, error_code: int | None = None, started: float, rpc_id: object = None,
        tokens: int = 0, cost_usd: float = 0.0, permission_request_id: str | None = None, via: CallVia = "rpc",
    ) -> CallRecord:
        """Writes one ledger row (batched), counts it and publishes it to subscribers. What a caller sent
        (method, service, operation, id) is taken as given and kept as bounded, printable text."""
        record = CallRecord(
            id=time_ordered_uuid(), ts=self.clock(), agent_id=agent_id, method=ledger_text(method),
            service=ledger_text(service), operation=ledger_text(operation), status=status, error_code=error_code,
            duration_ms=(time.perf_counter() - started) * 1000, tokens=tokens, cost_usd=cost_usd,
            rpc_id=ledger_text(rpc_id), permission_request_id=permission_request_id, via=via,
        )
        self.recorder.record_call(record)
        self.metrics.observe(record)
        self.usage.add(record)
        self.events.publish(CallFinished(record))
        return record

    def _upstream_state_changed(self, service: str) -> None:
        """An MCP upstream's child went up, down or away: its health is checked now, not at the next interval."""
        if self._stopping:
            return
        check = asyncio.get_running_loop().create_task(self.health.check(service))
        self._health_checks.add(check)
        check.add_done_callback(self._health_checks.discard)

    def _upstream_tools_changed(self, service: str) -> None:
        tools = self.services[service].operations.values()
        self.events.publish(ToolsListed(service, tuple(tool for tool in tools if isinstance(tool, UpstreamTool))))

    def _health_checked(self, service: str, previous: HealthReport | None, current: HealthReport) -> None:
        checked = HealthChecked(service, previous, current)
        if checked.status_changed:
            # The operator's record of what the upstream said, internal addresses included (agents get it scrubbed).
            log.log(logging.INFO if current.status == "healthy" else logging.WARNING, "%s is %s: %s", service,
                    current.status, current.message)
            self.metrics.service_up.labels(service).set(1 if current.status in ("healthy", "degraded") else 0)
        self.events.publish(checked)

    # -- what the gateway knows --------------------------------------------------------------------

    def service_status(self, name: str) -> HealthStatus:
        state = self.services[name]
        if state.handler is None:
            return "not_configured"
        report = self.health.reports.get(name)
        return report.status if report else "unknown"

    def describe_service(self, name: str) -> ServiceDescription:
        """GET /mcp/service/{name}: everything about one service, its operations' schemas included."""
        state = self._resolve_service(name)
        spec = state.spec
        report = self.health.reports.get(spec.name)
        limit = self._service_limits[spec.name].limit
        return ServiceDescription(
            name=spec.name, description=spec.description, location=spec.location, alwaysActive=spec.always_active,
            aliases=list(spec.aliases), status=self.service_status(spec.name),
            missingSettings=state.missing_settings,
            health=HealthView(status=report.status, checkedAt=report.checked_at, latencyMs=report.latency_ms,
                              message=self.scrubber.text(report.message)) if report else None,
            pricing=Pricing(avgTokensPerCall=spec.avg_tokens_per_call, costPerCall=spec.cost_per_call),
            rateLimit=RateLimitView(maxRequests=limit.max_requests, windowMs=limit.window_ms),
            operations=self.capabilities(spec.name))

    def catalog_listing(self) -> CatalogListing:
        """GET /mcp/catalog: every service described."""
        services = [self.describe_service(name) for name in self.catalog.names()]
        return CatalogListing(services=services, count=len(services))

    def service_summaries(self) -> list[ServiceSummary]:
        """mcp.listServices: every service of the catalog, with its state and operation names."""
        return [ServiceSummary(name=spec.name, version=__version__, description=spec.description,
                               location=spec.location, status=self.service_status(spec.name),
                               capabilities=list(self.services[spec.name].operations),
                               alwaysActive=spec.always_active,
                               pricing=Pricing(avgTokensPerCall=spec.avg_tokens_per_call,
                                               costPerCall=spec.cost_per_call))
                for spec in self.catalog.services.values()]

    def capabilities(self, name: str) -> list[Capability]:
        """mcp.getCapabilities: one service's operations with their schemas, risk and cost."""
        state = self._resolve_service(name)
        capabilities = []
        for operation in state.operations.values():
            tokens, cost = catalog_cost(state.spec, operation)
            schema = dict(operation.input_schema) if isinstance(operation, UpstreamTool) \
                else operation.args_model.model_json_schema()
            capabilities.append(Capability(name=operation.name, description=operation.description, risk=operation.risk,
                                           arguments=operation.positional_fields, inputSchema=schema,
                                           cost=Pricing(avgTokensPerCall=tokens, costPerCall=cost)))
        return capabilities

    def statistics(self) -> Statistics:
        """mcp.getStatistics: services by state and location, and usage since start."""
        services = [ServiceCount(name=name, status=self.service_status(name), location=state.spec.location,
                                 capabilities=len(state.operations)) for name, state in self.services.items()]
        return Statistics(
            total=len(services),
            active=sum(service.status not in ("not_configured", "down") for service in services),
            inactive=sum(service.status == "not_configured" for service in services),
            error=sum(service.status == "down" for service in services),
            serverSide=sum(service.location == "server" for service in services),
            local=sum(service.location == "local" for service in services),
            services=services,
            usage=UsageSummary(
                since=iso_utc(self.started_at), uptimeSeconds=round(self.uptime_seconds, 3),
                totals=self.usage.since_start.as_dict(),
                byService={name: totals.as_dict() for name, totals in sorted(self.usage.by_service.items())}),
        )
