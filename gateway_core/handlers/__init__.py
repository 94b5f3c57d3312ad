"""Service handlers, one module per service, registered here by service name."""

from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.cloudflare import CloudflareHandler
from gateway_core.handlers.coolify import CoolifyHandler
from gateway_core.handlers.github import GitHubHandler
from gateway_core.handlers.mem0 import Mem0Handler
from gateway_core.handlers.minio import MinioHandler
from gateway_core.handlers.n8n import N8nHandler
from gateway_core.handlers.postgres import PostgresHandler

HANDLER_CLASSES: dict[str, type[ServiceHandler]] = {
    handler.service: handler
    for handler in (CoolifyHandler, PostgresHandler, GitHubHandler, CloudflareHandler, N8nHandler, Mem0Handler,
                    MinioHandler)
}

__all__ = ["HANDLER_CLASSES", "ServiceHandler"]
