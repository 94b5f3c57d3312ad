"""Wire models: what agents send, validated at the edge, and the envelopes we answer with."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from gateway_core.errors import GatewayError

JsonRpcId = StrictStr | StrictInt | StrictFloat | None


class JsonRpcRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    jsonrpc: Literal["2.0"]
    method: StrictStr
    id: JsonRpcId = None
    params: dict[str, Any] | list[Any] | None = None

    @property
    def is_notification(self) -> bool:
        return "id" not in self.model_fields_set


class ExecuteOptions(BaseModel):
    """Per-call options; the operation may read the ones its argument model declares (force, limit...)."""

    model_config = ConfigDict(extra="allow")

    waitForApproval: float | None = Field(None, ge=0)


class ExecuteParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    service: StrictStr = Field(min_length=1)
    operation: StrictStr = Field(min_length=1)
    args: list[Any] | dict[str, Any] | None = None
    database: StrictStr | None = None
    options: ExecuteOptions = Field(default_factory=ExecuteOptions)

    def argument_defaults(self) -> dict[str, Any]:
        """Values an operation may take from outside `args`: the options, and `database`."""
        defaults = dict(self.options.model_extra or {})
        if self.database is not None:
            defaults["database"] = self.database
        return defaults


class ServiceParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    service: StrictStr = Field(min_length=1)


class SlashRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command: StrictStr = Field(min_length=1)
    options: ExecuteOptions = Field(default_factory=ExecuteOptions)
    id: JsonRpcId = None


def success_envelope(rpc_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result}


def error_envelope(rpc_id: Any, error: GatewayError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": error.to_error_object()}
