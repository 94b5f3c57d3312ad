"""Service handlers, one module per service, registered here by service name."""

from gateway_core.handlers.base import ServiceHandler

HANDLER_CLASSES: dict[str, type[ServiceHandler]] = {}

__all__ = ["HANDLER_CLASSES", "ServiceHandler"]
