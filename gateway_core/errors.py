"""One exception type per JSON-RPC error code; each knows its HTTP status (gateway-protocol.md)."""

from __future__ import annotations

from typing import Any, ClassVar


class GatewayError(Exception):
    """An error the gateway answers with. `message` and `data` must never hold a secret."""

    code: ClassVar[int] = -32603
    http_status: ClassVar[int] = 500
    name: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_error_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(GatewayError):
    code, http_status, name = -32700, 400, "PARSE_ERROR"


class InvalidRequest(GatewayError):
    code, http_status, name = -32600, 400, "INVALID_REQUEST"


class MethodNotFound(GatewayError):
    code, http_status, name = -32601, 404, "METHOD_NOT_FOUND"


class InvalidParams(GatewayError):
    code, http_status, name = -32602, 400, "INVALID_PARAMS"


class InternalError(GatewayError):
    code, http_status, name = -32603, 500, "INTERNAL_ERROR"


class ServiceNotFound(GatewayError):
    code, http_status, name = -32000, 404, "SERVICE_NOT_FOUND"


class ServiceUnavailable(GatewayError):
    code, http_status, name = -32001, 503, "SERVICE_UNAVAILABLE"


class OperationNotSupported(GatewayError):
    code, http_status, name = -32002, 400, "OPERATION_NOT_SUPPORTED"


class AuthenticationRequired(GatewayError):
    code, http_status, name = -32003, 401, "AUTHENTICATION_REQUIRED"


class PermissionDenied(GatewayError):
    code, http_status, name = -32004, 403, "PERMISSION_DENIED"


class RateLimitExceeded(GatewayError):
    code, http_status, name = -32005, 429, "RATE_LIMIT_EXCEEDED"


class UpstreamTimeout(GatewayError):
    code, http_status, name = -32006, 504, "TIMEOUT"


class ResourceNotFound(GatewayError):
    code, http_status, name = -32007, 404, "RESOURCE_NOT_FOUND"


class Conflict(GatewayError):
    code, http_status, name = -32008, 409, "CONFLICT"


class ValidationFailed(GatewayError):
    code, http_status, name = -32009, 400, "VALIDATION_ERROR"


class BudgetExceeded(GatewayError):
    code, http_status, name = -32010, 402, "BUDGET_EXCEEDED"


class RequestCancelled(GatewayError):
    """The client cancelled the call (MCP's notifications/cancelled): never an HTTP answer of its own."""

    code, http_status, name = -32800, 400, "REQUEST_CANCELLED"


_BY_CODE = {error.code: error for error in GatewayError.__subclasses__()}  # one class per code, all above


def error_for(code: int, message: str, data: dict[str, Any] | None = None) -> GatewayError:
    """The error a code names, as read back from an answer (an unknown code: an internal error)."""
    return _BY_CODE.get(code, InternalError)(message, data)
