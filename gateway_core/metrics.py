"""Prometheus metrics under the existing names, with true labels; one registry per gateway."""

from __future__ import annotations

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


class GatewayMetrics:
    def __init__(self) -> None:
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

    def observe(self, record: CallRecord) -> None:
        service = record.service or ""
        operation = record.operation or record.method or ""
        agent_id = record.agent_id or ""
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
