"""What the console knows, owned by the app and read by its screens: the gateway (once it has started),
the requests waiting for a decision, the latest calls, agents' names, and the one clock. Screens are
handed this at construction; they never reach for the app."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from gateway_core.clock import Clock
from gateway_core.operator_api import GatewayView
from gateway_core.orchestrator.models import PermissionRequestEvent, PermissionResponseEvent
from gateway_core.store import CallRecord

CALLS_SHOWN = 200  # the latest calls kept for the live table (the ledger keeps them all)


def request_key(request: PermissionRequestEvent) -> str:
    return f"{request.request_id} {request.service_name} {request.operation or '*'}"


@dataclass
class ConsoleState:
    clock: Clock
    read_only: bool
    gateway: GatewayView | None = None
    pending: OrderedDict[str, PermissionRequestEvent] = field(default_factory=OrderedDict)
    calls: deque[CallRecord] = field(default_factory=lambda: deque(maxlen=CALLS_SHOWN))
    agent_names: dict[str, str] = field(default_factory=dict)
    permission_changes: int = 0  # decisions and revocations seen: what was loaded before one is out of date
    # Services the sandbox cannot run in-process (postgres, minio): unconfigured, each gets a line saying which
    # settings point it at a real server, where the others share one "not configured" line.
    not_in_sandbox: tuple[str, ...] = ()

    def add_request(self, request: PermissionRequestEvent) -> bool:
        """Queues a request (False when it is there already). Keyed by id, service and operation: the existing
        orchestrator names requests by the second, and two in one second must both show."""
        key = request_key(request)
        if key in self.pending:
            return False
        self.pending[key] = request
        return True

    def settle(self, response: PermissionResponseEvent) -> list[str]:
        """Takes the decided requests off the queue, returning their keys: the one decided, or, for a decision
        that names no operation (the existing orchestrator's), every request of that agent and service."""
        settled = [key for key, request in self.pending.items()
                   if request.request_id == response.request_id
                   or (response.operation is None and request.agent_id == response.agent_id
                       and request.service_name == response.service_name)]
        for key in settled:
            del self.pending[key]
        return settled

    def agent_name(self, agent_id: str | None) -> str:
        if agent_id is None:
            return "-"
        return self.agent_names.get(agent_id, agent_id)
