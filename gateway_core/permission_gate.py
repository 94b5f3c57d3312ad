"""The permission gate: may this agent make this call now? It asks the policy; when the answer is no, it
files a permission request with the orchestrator (one per agent, service and operation while undecided)
and, when the agent asked to wait, holds the call until a decision, a timeout or the gateway's stop. It
follows the orchestrator's feed for decisions and the link's state, and tells subscribers what it sees.
Every refusal is audited; it fails closed and never claims a request was filed when it was not."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time

from gateway_core.catalog import ServiceSpec
from gateway_core.clock import Clock, iso_utc
from gateway_core.decisions import DecisionBoard, Recheck, Stopping
from gateway_core.errors import PermissionDenied
from gateway_core.events import EventBus, LinkChanged, PermissionEvent
from gateway_core.metrics import GatewayMetrics
from gateway_core.operations import Operation, OperationArgs
from gateway_core.orchestrator.client import LinkState, OrchestratorClient, OrchestratorUnavailable, params_preview
from gateway_core.orchestrator.models import (
    PermissionRequestBody,
    PermissionRequestEvent,
    PermissionResponseEvent,
    PermissionRevokedEvent,
)
from gateway_core.permissions import PermissionPolicy
from gateway_core.recorder import Recorder
from gateway_core.store import AuditEvent

log = logging.getLogger(__name__)


def arguments_hash(service: str, operation: str, args: OperationArgs) -> str:
    """What a one-time approval is bound to: this service, operation and these arguments."""
    canonical = json.dumps([service, operation, args.model_dump(mode="json")], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class PermissionGate:
    def __init__(self, policy: PermissionPolicy, orchestrator: OrchestratorClient | None, max_wait: float,
                 recorder: Recorder, metrics: GatewayMetrics, events: EventBus, clock: Clock) -> None:
        """`orchestrator` None: grants come from the store alone and nothing can be asked for."""
        self.policy = policy
        self._orchestrator = orchestrator
        self._max_wait = max_wait  # the cap on a call's options.waitForApproval
        self._recorder = recorder
        self._metrics = metrics
        self._events = events
        self._clock = clock
        self.decisions = DecisionBoard()
        self.link_state: LinkState | None = None  # None: no orchestrator linked
        self._feed: asyncio.Task[None] | None = None
        self._filed: dict[tuple[str, str, str], asyncio.Future[str]] = {}

    async def start(self) -> None:
        await self.policy.start()
        if self._orchestrator is not None:
            self._feed = asyncio.create_task(self._follow(self._orchestrator), name="orchestrator-feed")

    def begin_shutdown(self) -> None:
        """Answers every held call at once (-32004, status gateway_stopping), and any call held from now on."""
        self.decisions.stop_all()

    async def aclose(self) -> None:
        self.begin_shutdown()
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
        if self._orchestrator is not None:
            await self._orchestrator.aclose()
        await self.policy.aclose()

    async def check(
        self, agent_id: str, spec: ServiceSpec, operation: Operation, args: OperationArgs,
        wait_seconds: float | None,
    ) -> str | None:
        """Returns when the call may go on (with the permission request it needed, if any); raises
        PermissionDenied otherwise. Fails closed, and never claims a request was filed when it wasn't."""
        args_hash = arguments_hash(spec.name, operation.name, args)

        def denied(status: str, message: str, request_id: str | None = None) -> PermissionDenied:
            self._recorder.record_audit(AuditEvent(self._clock(), f"agent:{agent_id}", "permission.refused",
                                                  request_id, {"service": spec.name, "operation": operation.name,
                                                               "status": status}))
            return PermissionDenied(message, {"service": spec.name, "operation": operation.name,
                                              "agentId": agent_id, "requestId": request_id, "status": status,
                                              "message": message})

        try:
            if await self.policy.is_allowed(agent_id, spec.name, operation, args_hash):
                return None
        except OrchestratorUnavailable as exc:
            raise denied("orchestrator_unavailable",
                         f"Permission could not be checked ({exc}); no permission request was filed") from None
        except Exception:  # fail closed
            log.exception("permission check failed for %s on %s", agent_id, spec.name)
            raise denied("denied", "Permission could not be checked; the call is refused") from None
        if self._orchestrator is None:
            raise denied("denied", f"Agent {agent_id} has no grant for {spec.name} (operation {operation.name}); "
                                   f"an operator can grant it with: mcp-console grants add {agent_id} {spec.name}")
        body = PermissionRequestBody(
            agent_id=agent_id, service_name=spec.name, operation=operation.name, risk=operation.risk,
            reason=f"Agent {agent_id} attempted to use {spec.name} for operation: {operation.name}",
            timestamp=iso_utc(self._clock()), params_preview=params_preview(args.model_dump(mode="json")),
            args_hash=args_hash)
        try:
            request_id = await self._file_once(body)
        except OrchestratorUnavailable as exc:
            raise denied("orchestrator_unavailable",
                         f"Permission is needed for {spec.name}.{operation.name}, but no request could be "
                         f"filed: {exc}") from None
        wait = min(wait_seconds or 0.0, self._max_wait)
        if not wait:
            raise denied("pending", f"Permission for {spec.name}.{operation.name} is pending an operator's "
                                    f"decision (request {request_id}); retry after it is approved", request_id)
        deadline = time.monotonic() + wait
        while True:
            decision = await self.decisions.wait(request_id, (agent_id, spec.name), deadline - time.monotonic())
            if decision is None:
                raise denied("pending", f"No decision on request {request_id} within {wait:g} s; it is still "
                                        "pending", request_id)
            if isinstance(decision, Stopping):
                raise denied("gateway_stopping", f"The gateway is stopping: request {request_id} is still pending; "
                                                 "retry once the gateway is back", request_id)
            if isinstance(decision, PermissionResponseEvent) and decision.request_id == request_id:
                break
            # A decision on another request for this agent and service, or a feed that was away and is
            # back: either may mean this call is covered now.
            if isinstance(decision, Recheck) or decision.final_status == "approved":
                self.policy.invalidate(agent_id)
                with contextlib.suppress(OrchestratorUnavailable):
                    if await self.policy.is_allowed(agent_id, spec.name, operation, args_hash):
                        return request_id
        if decision.final_status != "approved":
            raise denied(decision.final_status, f"Permission request {request_id} was {decision.final_status}"
                         + (f": {decision.reason}" if decision.reason else ""), request_id)
        self.policy.invalidate(agent_id)
        try:
            allowed = await self.policy.is_allowed(agent_id, spec.name, operation, args_hash)
        except OrchestratorUnavailable as exc:
            raise denied("orchestrator_unavailable", f"Approved, but the grant could not be read: {exc}",
                         request_id) from None
        if not allowed:
            raise denied("denied", f"Request {request_id} was approved, but its grant does not cover this call "
                                   "(already used, expired or revoked)", request_id)
        return request_id

    async def _file_once(self, body: PermissionRequestBody) -> str:
        """Files a permission request, or joins the one this gateway already filed for the same agent,
        service and operation while it is undecided (the orchestrator dedupes too; this spares it a storm)."""
        assert self._orchestrator is not None
        subject = (body.agent_id, body.service_name, body.operation or "")
        filed = self._filed.get(subject)
        if filed is None:
            filed = self._filed[subject] = asyncio.ensure_future(self._orchestrator.request_permission(body))
            filed.add_done_callback(lambda done: done.exception() and self._filed.pop(subject, None))
            self._metrics.count_decision(body.service_name, "requested")
        return await asyncio.shield(filed)

    async def _follow(self, client: OrchestratorClient) -> None:
        """Learns decisions at once from the orchestrator's feed, and tells subscribers what it sees."""
        async for item in client.events():
            if isinstance(item, LinkState):
                self.link_state = item
                self._events.publish(LinkChanged(item))
                if item.status == "connected":
                    # Decisions made while we were away were not heard: forget what they may have changed.
                    self._filed.clear()
                    self.policy.invalidate()
                    self.decisions.recheck_all()
                continue
            if isinstance(item, PermissionResponseEvent):
                self._filed.pop((item.agent_id or "", item.service_name or "", item.operation or ""), None)
                self.decisions.publish(item)
                self.policy.invalidate(item.agent_id)
                self._metrics.count_decision(item.service_name, item.final_status)
                self._recorder.record_audit(AuditEvent(
                    self._clock(), item.decided_by or "orchestrator", "permission.decision_seen", item.request_id,
                    {"status": item.final_status, "agent_id": item.agent_id, "service": item.service_name}))
            elif isinstance(item, PermissionRevokedEvent):
                self.policy.invalidate(item.agent_id)
            if isinstance(item, PermissionRequestEvent | PermissionResponseEvent | PermissionRevokedEvent):
                self._events.publish(PermissionEvent(item))
