"""The permission gate: may this agent make this call now? It asks the policy; when the answer is no, it
files a permission request with the orchestrator (one per agent, service and operation while undecided, filed
again after `refile_seconds`) and, when the agent asked to wait, holds the call until a decision, a timeout or
the gateway's stop. It follows the orchestrator's feed for decisions, the link's state and what the
orchestrator can grant, and tells subscribers what it sees; operators' decisions and revocations go through it.
Every refusal is audited; it fails closed and never claims a request was filed when it was not."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway_core.catalog import ServiceSpec
from gateway_core.clock import Clock, iso_utc
from gateway_core.decisions import DecisionBoard, Recheck, Stopping, remember
from gateway_core.errors import PermissionDenied
from gateway_core.events import EventBus, LinkChanged, PermissionEvent
from gateway_core.metrics import GatewayMetrics
from gateway_core.operations import Operation, OperationArgs
from gateway_core.orchestrator.client import (
    LinkState,
    OrchestratorClient,
    OrchestratorUnavailable,
    UnknownAgent,
    params_preview,
)
from gateway_core.orchestrator.models import (
    Decided,
    OrchestratorCapabilities,
    PermissionRequestBody,
    PermissionRequestEvent,
    PermissionRespondBody,
    PermissionResponseEvent,
    PermissionRevokedEvent,
)
from gateway_core.permissions import PermissionPolicy
from gateway_core.recorder import Recorder
from gateway_core.store import AuditEvent
from gateway_core.store.records import RefusalStatus, Scope

log = logging.getLogger(__name__)


def arguments_hash(service: str, operation: str, args: OperationArgs) -> str:
    """What a one-time approval is bound to: this service, operation and these arguments."""
    canonical = json.dumps([service, operation, args.model_dump(mode="json")], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# Told when a call starts to wait: for an operator's decision (the request's id), or for its upstream (None).
WaitListener = Callable[[str | None], None]


class DecisionNotSupported(ValueError):
    """A decision the orchestrator cannot carry out as asked (the external one grants whole services, forever)."""


@dataclass(frozen=True, slots=True)
class _Filed:
    at: float  # the gate's clock when it was filed
    heard_before: int  # the decisions heard by then: none of them is on this request
    request_id: asyncio.Future[str]


class PermissionGate:
    def __init__(self, policy: PermissionPolicy, orchestrator: OrchestratorClient | None, max_wait: float,
                 recorder: Recorder, metrics: GatewayMetrics, events: EventBus, clock: Clock, *,
                 always_ask: Collection[str] = (), refile_seconds: float = 60.0, default_wait: float = 0.0) -> None:
        """`orchestrator` None: grants come from the store alone and nothing can be asked for. `always_ask`:
        the risks that need a one-time approval each call, which only an orchestrator granting `once` gives."""
        self.policy = policy
        self._orchestrator = orchestrator
        self._max_wait = max_wait  # the cap on a call's options.waitForApproval
        self._default_wait = default_wait  # the hold of a call that names none ([permission] wait_seconds)
        self._recorder = recorder
        self._metrics = metrics
        self._events = events
        self._clock = clock
        self._always_ask = frozenset(always_ask)
        self._refile_seconds = refile_seconds
        self.decisions = DecisionBoard()
        self.link_state: LinkState | None = None  # None: no orchestrator linked
        self.capabilities: OrchestratorCapabilities | None = None  # learnt when the feed connects
        self._feed: asyncio.Task[None] | None = None
        self._filed: dict[tuple[str, str, str], _Filed] = {}
        self._seen: OrderedDict[str, PermissionRequestEvent] = OrderedDict()  # requests on the feed, undecided
        self._decided_here: OrderedDict[str, str] = OrderedDict()  # request id -> the operator deciding it here

    def configure(self, max_wait: float, refile_seconds: float, always_ask: Collection[str],
                  default_wait: float) -> None:
        """New settings (a reloaded config file), from the next call on; calls held now keep their deadline."""
        self._max_wait, self._refile_seconds, self._always_ask = max_wait, refile_seconds, frozenset(always_ask)
        self._default_wait = default_wait

    @property
    def pending(self) -> list[PermissionRequestEvent]:
        """The requests seen on the orchestrator's feed and not decided yet, oldest first."""
        return list(self._seen.values())

    @property
    def has_pending_list(self) -> bool | None:
        """Whether the orchestrator lists pending requests (the external one does not); None: not known yet."""
        return self._orchestrator.has_pending_list if self._orchestrator is not None else None

    def _linked(self) -> OrchestratorClient:
        if self._orchestrator is None:
            raise OrchestratorUnavailable("no orchestrator is linked: grants are managed with the CLI")
        return self._orchestrator

    async def learn_capabilities(self) -> OrchestratorCapabilities:
        """Asks the orchestrator what it can grant and list; OrchestratorUnavailable when it cannot be asked."""
        self.capabilities = await self._linked().capabilities()
        return self.capabilities

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
        wait_seconds: float | None, on_wait: WaitListener | None = None,
    ) -> str | None:
        """Returns when the call may go on (with the permission request it needed, if any); raises
        PermissionDenied otherwise. Fails closed, and never claims a request was filed when it wasn't."""
        args_hash = arguments_hash(spec.name, operation.name, args)

        def denied(status: RefusalStatus, message: str, request_id: str | None = None) -> PermissionDenied:
            self._recorder.record_audit(AuditEvent(self._clock(), f"agent:{agent_id}", "permission.refused",
                                                  request_id, {"service": spec.name, "operation": operation.name,
                                                               "status": status}))
            return PermissionDenied(message, {"service": spec.name, "operation": operation.name,
                                              "agentId": agent_id, "requestId": request_id, "status": status,
                                              "message": message})

        def unknown(exc: UnknownAgent) -> PermissionDenied:
            return denied("unknown_agent", f"The orchestrator does not know agent {agent_id} ({exc.reason}); no "
                                           "permission request was filed: an operator must register the agent "
                                           "there under this id")

        try:
            if await self.policy.is_allowed(agent_id, spec.name, operation, args_hash):
                return None
        except OrchestratorUnavailable as exc:
            raise denied("orchestrator_unavailable",
                         f"Permission could not be checked ({exc}); no permission request was filed") from None
        except UnknownAgent as exc:
            raise unknown(exc) from None
        except Exception:  # fail closed
            log.exception("permission check failed for %s on %s", agent_id, spec.name)
            raise denied("denied", "Permission could not be checked; the call is refused") from None
        if self._orchestrator is None:
            raise denied("denied", f"Agent {agent_id} has no grant for {spec.name} (operation {operation.name}); "
                                   f"an operator can grant it with: mcp-console grants add {agent_id} {spec.name}")
        if operation.risk in self._always_ask and (self.capabilities is None or "once" not in self.capabilities.scopes):
            needs = f"{spec.name}.{operation.name} needs a one-time approval each call ([policy] always_ask)"
            if self.capabilities is None:
                raise denied("orchestrator_unavailable", f"{needs}, and whether the orchestrator can grant one is "
                                                         "not known yet (it could not be asked); no permission "
                                                         "request was filed")
            raise denied("cannot_grant_once", f"{needs}, which this orchestrator cannot grant (it grants whole "
                                              "services only); no permission request was filed")
        body = PermissionRequestBody(
            agent_id=agent_id, service_name=spec.name, operation=operation.name, risk=operation.risk,
            reason=f"Agent {agent_id} attempted to use {spec.name} for operation: {operation.name}",
            timestamp=iso_utc(self._clock()), params_preview=params_preview(args.model_dump(mode="json")),
            args_hash=args_hash)
        try:
            request_id, heard_before = await self._file_once(body)
        except OrchestratorUnavailable as exc:
            raise denied("orchestrator_unavailable",
                         f"Permission is needed for {spec.name}.{operation.name}, but no request could be "
                         f"filed: {exc}") from None
        except UnknownAgent as exc:
            raise unknown(exc) from None
        wait = min(self._default_wait if wait_seconds is None else wait_seconds, self._max_wait)
        if not wait:
            raise denied("pending", f"Permission for {spec.name}.{operation.name} is pending an operator's "
                                    f"decision (request {request_id}); retry after it is approved", request_id)
        deadline = time.monotonic() + wait
        if on_wait is not None:
            on_wait(request_id)
        while True:
            decision = await self.decisions.wait(request_id, (agent_id, spec.name), deadline - time.monotonic(),
                                                 heard_before)
            if decision is None:
                raise denied("timed_out", f"No decision on request {request_id} within {wait:g} s; it is still "
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
                with contextlib.suppress(OrchestratorUnavailable, UnknownAgent):
                    if await self.policy.is_allowed(agent_id, spec.name, operation, args_hash):
                        return request_id
        status = decision.final_status
        if status != "approved":
            raise denied(status, f"Permission request {request_id} was {status}"
                         + (f": {decision.reason}" if decision.reason else ""), request_id)
        self.policy.invalidate(agent_id)
        try:
            allowed = await self.policy.is_allowed(agent_id, spec.name, operation, args_hash)
        except (OrchestratorUnavailable, UnknownAgent) as exc:
            raise denied("orchestrator_unavailable", f"Approved, but the grant could not be read: {exc}",
                         request_id) from None
        if not allowed:
            raise denied("denied", f"Request {request_id} was approved, but its grant does not cover this call "
                                   "(already used, expired or revoked)", request_id)
        return request_id

    async def _file_once(self, body: PermissionRequestBody) -> tuple[str, int]:
        """Files a permission request, or joins the one this gateway filed for the same agent, service and
        operation while it is undecided (the orchestrator dedupes too; this spares it a storm). One undecided for
        `refile_seconds` is filed again: the external orchestrator showed it only to the consoles listening then.
        Returns its id and the number of decisions heard before it was filed."""
        orchestrator = self._linked()
        subject = (body.agent_id, body.service_name, body.operation or "")
        filed = self._filed.get(subject)
        if filed is None or (filed.request_id.done() and self._clock() - filed.at >= self._refile_seconds):
            filed = self._filed[subject] = _Filed(self._clock(), self.decisions.heard,
                                                  asyncio.ensure_future(orchestrator.request_permission(body)))

            def forget_failed(done: asyncio.Future[str]) -> None:
                if done.exception() is not None and self._filed.get(subject) is filed:
                    del self._filed[subject]

            filed.request_id.add_done_callback(forget_failed)
            self._metrics.count_decision(body.service_name, "requested")
        return await asyncio.shield(filed.request_id), filed.heard_before

    def _settle(self, decision: PermissionResponseEvent) -> None:
        """Forgets the requests a decision settles, so that the next call asks again if it must: the one for its
        operation, or every one for its agent and service when it names none (the external orchestrator's)."""
        for agent_id, service, operation in list(self._filed):
            if (agent_id, service) == (decision.agent_id, decision.service_name) and (
                    decision.operation is None or operation == decision.operation):
                del self._filed[(agent_id, service, operation)]

    # -- operators' decisions ---------------------------------------------------------------------------

    async def decide(self, request_id: str, approved: bool, *, operator_id: str, reason: str | None = None,
                     scope: Scope | None = None, expires_in_seconds: float | None = None) -> Decided:
        """Decides a request as `operator_id` (`operator:<login>`). Ours records and audits the decision under
        that operator; for an orchestrator that does not (the external one) the gateway audits it. Raises
        DecisionNotSupported for a scope or expiry the orchestrator cannot grant (nothing is sent), and the
        client's DecisionConflict, UnknownRequest and OrchestratorUnavailable."""
        orchestrator = self._linked()
        capabilities = self.capabilities or await self.learn_capabilities()
        if (scope or "service") not in capabilities.scopes:
            raise DecisionNotSupported(f"this orchestrator cannot grant scope {scope!r} (only "
                                       f"{', '.join(capabilities.scopes)})")
        if expires_in_seconds is not None and not capabilities.expiry:
            raise DecisionNotSupported("this orchestrator cannot grant for a limited time (its grants never expire)")
        request = self._seen.get(request_id)  # read now: the decision's event may come before the answer
        remember(self._decided_here, request_id, operator_id)
        try:
            decided = await orchestrator.respond(PermissionRespondBody(
                request_id=request_id, approved=approved, reason=reason, scope=scope,
                expires_in_seconds=expires_in_seconds, decided_by=operator_id))
        except BaseException:
            self._decided_here.pop(request_id, None)
            raise
        if not capabilities.audit:
            self._recorder.record_audit(AuditEvent(
                self._clock(), operator_id, "permission.approved" if approved else "permission.denied", request_id,
                {"agent_id": request.agent_id if request else None,
                 "service": request.service_name if request else None,
                 "operation": request.operation if request else None,
                 "scope": (scope or "service") if approved else None, "reason": reason}))
        return decided

    async def revoke(self, grant_id: str, *, operator_id: str) -> None:
        """Revokes a grant as `operator_id` (`operator:<login>`), under whom ours audits it; RouteMissing from an
        orchestrator whose grants cannot be revoked (the external one)."""
        await self._linked().revoke_grant(grant_id, operator_id)

    # -- the feed ---------------------------------------------------------------------------------------

    async def _follow(self, client: OrchestratorClient) -> None:
        """Learns decisions at once from the orchestrator's feed, and tells subscribers what it sees."""
        async for item in client.events():
            if isinstance(item, LinkState):
                if item.status == "connected":
                    try:  # before the link shows as connected: calls that need a one-time approval wait on it
                        await self.learn_capabilities()
                    except OrchestratorUnavailable as exc:
                        log.warning("could not ask the orchestrator what it can grant: %s", exc)
                    # Decisions made while we were away were not heard: forget what they may have changed.
                    self._filed.clear()
                    self.policy.invalidate()
                    self.decisions.recheck_all()
                self.link_state = item
                self._events.publish(LinkChanged(item))
                continue
            if isinstance(item, PermissionRequestEvent):
                remember(self._seen, item.request_id, item)
            elif isinstance(item, PermissionResponseEvent):
                self._seen.pop(item.request_id, None)
                decided_here = self._decided_here.pop(item.request_id, None)
                if item.decided_by is None and decided_here is not None:
                    # An orchestrator that does not say who decided (the external one): every console is told
                    # who did, when it was an operator of this gateway.
                    item = item.model_copy(update={"decided_by": decided_here})
                self._settle(item)
                self.decisions.publish(item)
                self.policy.invalidate(item.agent_id)
                self._metrics.count_decision(item.service_name, item.final_status)
                self._recorder.record_audit(AuditEvent(
                    self._clock(), item.decided_by or decided_here or "orchestrator", "permission.decision_seen",
                    item.request_id,
                    {"status": item.final_status, "agent_id": item.agent_id, "service": item.service_name}))
            elif isinstance(item, PermissionRevokedEvent):
                self.policy.invalidate(item.agent_id)
            if isinstance(item, PermissionRequestEvent | PermissionResponseEvent | PermissionRevokedEvent):
                self._events.publish(PermissionEvent(item))
