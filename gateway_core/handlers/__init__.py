"""Service handlers, one module per service, registered here by service name."""

from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.coolify import CoolifyHandler

HANDLER_CLASSES: dict[str, type[ServiceHandler]] = {
    handler.service: handler for handler in (CoolifyHandler,)
}

__all__ = ["HANDLER_CLASSES", "ServiceHandler"]
