"""An operation, declared once, for any service: what it is called (and what else), its arguments, risk
and cost, what it acts on, where a form's choices come from, how the slash form writes it, and how its
result is shaped.

Validation, `mcp.getCapabilities`, the slash parser, the console's forms, pickers and palette, and MCP
tool schemas all read this declaration and nothing else: adding a service is declaring its operations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from gateway_core.errors import InvalidParams

Risk = Literal["read", "write", "destructive"]
# How the slash form's text after the operation becomes arguments: shell-like words, positional ("words");
# the whole rest as one argument, quotes and all ("text": SQL, a memory); a word, then JSON ("word_and_json").
SlashRest = Literal["words", "text", "word_and_json"]


class OperationArgs(BaseModel):
    """Base of every operation's argument model; the field order is the positional order."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def extra_seconds(self) -> float:
        """Time this call may take beyond the upstream timeout (an operation that waits says how long)."""
        return 0.0


class NoArgs(OperationArgs):
    pass


@dataclass(frozen=True, slots=True)
class Target:
    """What an operation acts on: the kind of resource, and the argument that names it (by id, or by a name
    the handler resolves). Screens show it and ask for it to be typed before anything destructive."""

    kind: str
    argument: str = "uuid"


@dataclass(frozen=True, slots=True)
class Picker:
    """Where a form's choices for one argument come from: another operation of the same service, run without
    arguments; in its result, the list under `items`, each item's `value` (what is sent) and `label`."""

    operation: str
    items: str
    value: str = "uuid"
    label: str = "name"


ResultShaper = Callable[[Mapping[str, Any], Any], dict[str, Any]]  # (the call's arguments, upstream answer)


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    args_model: type[OperationArgs]
    risk: Risk
    description: str
    _: KW_ONLY
    tokens: int | None = None  # catalog-mode override of the service's avgTokensPerCall
    tokens_of: Callable[[Mapping[str, Any]], int] | None = None  # a call's tokens from its result, where they vary
    cost_usd: float | None = None  # catalog-mode override of the service's costPerCall
    group: str = "general"  # where screens and the palette list it
    target: Target | None = None
    pickers: Mapping[str, Picker] = field(default_factory=dict)  # argument → where its choices come from
    aliases: tuple[str, ...] = ()  # other names agents use for it (mcp.execute and the slash form)
    slash_rest: SlashRest = "words"
    slash_keeps: tuple[str, ...] = ()  # aliases that are part of the text itself ("select ..." is SQL)
    shape: ResultShaper | None = None  # turns the upstream's answer into the result's `data`

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
        if len(args) == 1 and isinstance(args[0], dict) and not self._first_field_is_object():
            return dict(args[0])
        if len(args) > len(fields):
            raise InvalidParams(
                f"Invalid arguments for {self.name}: takes at most {len(fields)} positional "
                f"argument(s) ({', '.join(fields) or 'none'}), got {len(args)}",
                {"errors": [{"field": "args", "message": f"at most {len(fields)} positional arguments",
                             "type": "too_many_arguments"}]},
            )
        return dict(zip(fields, args, strict=False))

    def _first_field_is_object(self) -> bool:
        """True when the first positional field itself is an object (so `[{...}]` is that object)."""
        fields = self.positional_fields
        if not fields:
            return False
        annotation = self.args_model.model_fields[fields[0]].annotation
        return annotation is dict or getattr(annotation, "__origin__", None) is dict


def spelling(name: str) -> str:
    """How a name is compared: case and `_` versus `-` do not matter (`list_repos` is `list-repos`)."""
    return name.strip().lower().replace("_", "-")


class OperationTable(Mapping[str, Operation]):
    """A service's operations by name, in declaration order; `find` also knows their aliases.

    `slash_prefixes` are words the slash form may put before the operation to set arguments of every
    operation (`/mcp-postgres ka-db list tables` chooses a database); `groups` the order screens list the
    operations' groups in (groups not named follow, as they first appear)."""

    def __init__(self, operations: Iterable[Operation],
                 slash_prefixes: Mapping[str, Mapping[str, Any]] | None = None, groups: Iterable[str] = ()) -> None:
        self.slash_prefixes = {spelling(word): dict(values) for word, values in (slash_prefixes or {}).items()}
        self._group_order = tuple(groups)
        self._by_name: dict[str, Operation] = {}
        self._by_spelling: dict[str, Operation] = {}
        for operation in operations:
            if operation.name in self._by_name:
                raise ValueError(f"operation {operation.name!r} is declared twice")
            self._by_name[operation.name] = operation
            for name in (operation.name, *operation.aliases):
                if self._by_spelling.setdefault(spelling(name), operation) is not operation:
                    raise ValueError(f"{name!r} names two operations")
        for operation in self._by_name.values():
            for argument, picker in operation.pickers.items():
                if picker.operation not in self._by_name:
                    raise ValueError(f"{operation.name}.{argument} picks from {picker.operation!r}, "
                                     "which this service does not declare")

    def __getitem__(self, name: str) -> Operation:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def grouped(self) -> dict[str, list[Operation]]:
        """The operations by group, in the declared order of groups, each in declaration order."""
        groups: dict[str, list[Operation]] = {group: [] for group in self._group_order}
        for operation in self._by_name.values():
            groups.setdefault(operation.group, []).append(operation)
        return {group: operations for group, operations in groups.items() if operations}

    def find(self, name: str) -> Operation | None:
        """The operation called `name` or one of its aliases, however it is spelled."""
        return self._by_spelling.get(spelling(name))

