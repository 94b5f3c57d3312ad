"""Prometheus metrics under the existing names, with true labels; one registry per gateway.

Labels only ever hold names the gateway declared (services, their operations, the methods it records) or
an authenticated caller's id; anything a caller made up is `unknown`, so no caller can grow /metrics. An MCP
upstream's tools are labelled while it lists them, the first MAX_TOOL_LABELS of them per service: a server
that keeps listing new names cannot grow /metrics either."""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway_core.store import CallRecord


@dataclass(frozen=True, slots=True)
class _CallChildren:
    operations: Any
    duration: Any
    errors: Any | None
    tokens: Any
    cost: Any


UNKNOWN = "unknown"
MAX_TOOL_LABELS = 200  # per MCP upstream


class GatewayMetrics:
    def __init__(self, operations: Mapping[str, Iterable[str]], methods: Collection[str],
                 live_operations: Mapping[str, Callable[[], Container[str]]] | None = None) -> None:
        """`operations`: each service's operation names; `methods`: the methods calls are recorded under;
        `live_operations`: for an MCP upstream, what it serves now."""
        self._operations = {service: frozenset(names) for service, names in operations.items()}
        self._live_operations = dict(live_operations or {})
        self._tool_labels: dict[str, set[str]] = {service: set() for service in self._live_operations}
        self._methods = frozenset(methods)
        self.registry = CollectorRegistry()
        r = self.registry
        self.operations = Counter("mcp_operations_total", "Calls by outcome",
                                  ["service", "operation", "status"], registry=r)
        self.duration = Histogram("mcp_operation_duration_seconds", "Call duration",
                                  ["service", "operation", "status"], registry=r)
        self.tokens = Counter("mcp_token_usage_total", "Tokens accounted",
                              ["service", "operation", "agent_id"], registry=r)
        self.cost = Counter("mcp_cost_usd_total", "Cost accounted in USD", ["service", "agent_id"], registry=r)
        self.permission_requests = Counter("mcp_permission_requests_total", "Permission requests by decision",
                                           ["service", "decision"], registry=r)
        self.rate_limit_hits = Counter("mcp_rate_limit_hits_total", "Calls refused by a rate limit", registry=r)
        self.errors = Counter("mcp_errors_total", "Errors by code", ["service", "code"], registry=r)
        self.active_requests = Gauge("mcp_active_requests", "Calls in flight", ["service"], registry=r)
        self._children: dict[tuple[str, str, str, int | None, str], _CallChildren] = {}
        self.service_up = Gauge("mcp_service_up", "1 when the last health check was healthy or degraded",
                                ["service"], registry=r)
        # The MCP front door's requests that write no ledger row (initialize, tools/list, ping, notifications),
        # by method: the front door labels only the MCP methods it knows, anything else `unknown`.
        self.mcp_front_door_requests = Counter("mcp_frontdoor_requests_total", "MCP front door requests by method",
                                               ["method"], registry=r)
        self.mcp_upstream_restarts = Counter("mcp_upstream_restarts_total", "MCP upstreams started again",
                                             ["service"], registry=r)

    def _service_label(self, service: str | None) -> str:
        if service is None:
            return ""
        return service if service in self._operations or service in self._live_operations else UNKNOWN

    def _operation_label(self, service: str, operation: str) -> str:
        if service in self._operations:
            return operation if operation in self._operations[service] else UNKNOWN
        labels = self._tool_labels.get(service)
        if labels is None:
            return UNKNOWN
        if operation not in labels:
            if len(labels) >= MAX_TOOL_LABELS or operation not in self._live_operations[service]():
                return UNKNOWN
            labels.add(operation)
        return operation

    def count_decision(self, service: str | None, decision: str) -> None:
        self.permission_requests.labels(self._service_label(service), decision).inc()

    def observe(self, record: CallRecord) -> None:
        service = self._service_label(record.service)
        if record.operation is not None:
            operation = self._operation_label(service, record.operation)
        else:
            operation = record.method if record.method in self._methods else UNKNOWN if record.method else ""
        agent_id = record.agent_id or ""  # set only once authenticated: bounded by the agents there are
        key = (service, operation, record.status, record.error_code, agent_id)
        children = self._children.get(key)
        if children is None:  # label lookups cost more than the increments: do them once per label set
            children = self._children[key] = _CallChildren(
                self.operations.labels(service, operation, record.status),
                self.duration.labels(service, operation, record.status),
                self.errors.labels(service, str(record.error_code)) if record.error_code is not None else None,
                self.tokens.labels(service, operation, agent_id),
                self.cost.labels(service, agent_id),
            )
        children.operations.inc()
        children.duration.observe(record.duration_ms / 1000)
        if children.errors is not None:
            children.errors.inc()
        if record.tokens:
            children.tokens.inc(record.tokens)
        if record.cost_usd:
            children.cost.inc(record.cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)
