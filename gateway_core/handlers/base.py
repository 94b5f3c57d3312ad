"""What a service handler is: its operations, how it executes one, how it reports health."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

from gateway_core.clock import Clock
from gateway_core.config import Settings
from gateway_core.health import HealthReport
from gateway_core.operations import Operation, OperationArgs, OperationTable


class ServiceHandler(ABC):
    """One service's adapter. `operations` is class-level data, so a service's operations are known
    (and arguments validated) even where its settings are missing; an MCP upstream's are what its server
    lists, and change while it runs (`live_operations`)."""

    service: ClassVar[str]
    operations: ClassVar[OperationTable]
    timeout_seconds: float | None = None  # a call's limit where the service has its own, else upstream_timeout_seconds

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        """Builds the handler; called only when the service's required settings are present. `clock` is the
        runtime's one clock: any time a handler stamps or reckons with comes from it."""

    @abstractmethod
    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        """Runs one operation; raises a GatewayError for a failure the agent should see."""

    @abstractmethod
    async def health(self) -> HealthReport: ...

    def needs_no_grant(self, caller: str, operation: Operation, args: OperationArgs) -> bool:
        """Asked of an always-active service's handler only: whether this call is one it serves without a grant
        (all, as the wire contract says, unless the handler narrows it: mem0 to the caller's own memories)."""
        return True

    def live_operations(self) -> OperationTable:
        """The operations this instance serves now: the class's declaration, unless they change at run time."""
        return self.operations

    async def start(self) -> None:  # noqa: B027 - most handlers start nothing of their own
        """Starts background work the service needs (an MCP upstream's child); returns without waiting for it."""

    async def aclose(self) -> None:  # noqa: B027 - handlers without connections need nothing here
        """Releases connections."""
