"""What a service handler is: its operations, how it executes one, how it reports health."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

from gateway_core.config import Settings
from gateway_core.health import HealthReport
from gateway_core.operations import Operation, OperationArgs, OperationTable


class ServiceHandler(ABC):
    """One service's adapter. `operations` is class-level data, so a service's operations are known
    (and arguments validated) even where its settings are missing."""

    service: ClassVar[str]
    operations: ClassVar[OperationTable]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Builds the handler; called only when the service's required settings are present."""

    @abstractmethod
    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        """Runs one operation; raises a GatewayError for a failure the agent should see."""

    @abstractmethod
    async def health(self) -> HealthReport: ...

    async def aclose(self) -> None:  # noqa: B027 - handlers without connections need nothing here
        """Releases connections."""
