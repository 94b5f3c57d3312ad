"""An operation, declared once: name, argument model, risk and an optional cost override.

Validation, `mcp.getCapabilities`, the slash parser, the console's forms and MCP tool schemas all
read this declaration."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway_core.errors import InvalidParams

Risk = Literal["read", "write", "destructive"]
RISKS: tuple[Risk, ...] = ("read", "write", "destructive")


class OperationArgs(BaseModel):
    """Base of every operation's argument model; the field order is the positional order."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def extra_seconds(self) -> float:
        """Time this call may take beyond the upstream timeout (an operation that waits says how long)."""
        return 0.0


class NoArgs(OperationArgs):
    pass


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    args_model: type[OperationArgs]
    risk: Risk
    description: str
    tokens: int | None = None  # catalog-mode override of the service's avgTokensPerCall
    cost_usd: float | None = None  # catalog-mode override of the service's costPerCall

    @property
    def positional_fields(self) -> list[str]:
        return list(self.args_model.model_fields)

    def parse_args(
        self, args: list[Any] | dict[str, Any] | None, defaults: Mapping[str, Any] | None = None
    ) -> OperationArgs:
        """Validates positional (`["uuid", true]`), object-in-list (`[{...}]`) or named arguments.

        `defaults` (the request's `options` and `database`) fill fields the arguments left unset."""
        named = self._name_arguments(args)
        for key, value in (defaults or {}).items():
            if key in self.args_model.model_fields and key not in named:
                named[key] = value
        try:
            return self.args_model.model_validate(named)
        except ValidationError as exc:
            errors = [
                {"field": ".".join(str(part) for part in error["loc"]) or "args", "message": error["msg"],
                 "type": error["type"]}
                for error in exc.errors(include_input=False, include_url=False)
            ]
            listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            raise InvalidParams(f"Invalid arguments for {self.name}: {listed}", {"errors": errors}) from None

    def _name_arguments(self, args: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
        if args is None:
            return {}
        if isinstance(args, dict):
            return dict(args)
        fields = self.positional_fields
        if len(args) == 1 and isinstance(args[0], dict) and not _takes_object(self.args_model, fields):
            return dict(args[0])
        if len(args) > len(fields):
            raise InvalidParams(
                f"Invalid arguments for {self.name}: takes at most {len(fields)} positional "
                f"argument(s) ({', '.join(fields) or 'none'}), got {len(args)}",
                {"errors": [{"field": "args", "message": f"at most {len(fields)} positional arguments",
                             "type": "too_many_arguments"}]},
            )
        return dict(zip(fields, args, strict=False))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "risk": self.risk,
            "arguments": self.positional_fields,
            "inputSchema": self.args_model.model_json_schema(),
        }


def _takes_object(model: type[BaseModel], fields: list[str]) -> bool:
    """True when the first positional field itself is an object (so `[{...}]` is that object)."""
    if not fields:
        return False
    annotation = model.model_fields[fields[0]].annotation
    return annotation is dict or getattr(annotation, "__origin__", None) is dict


def operation_table(operations: Iterable[Operation]) -> dict[str, Operation]:
    table: dict[str, Operation] = {}
    for operation in operations:
        if operation.name in table:
            raise ValueError(f"operation {operation.name!r} is declared twice")
        table[operation.name] = operation
    return table
