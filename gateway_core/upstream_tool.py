"""An MCP upstream's tool as an operation of its service: what the MCP upstreams (which make them from a
server's `tools/list`) and the MCP front door (which lists them to clients) agree on.

Its arguments are checked against the tool's own input schema (JSON Schema, Draft 2020-12), not a pydantic
model; a call's `data` is `{"content": [<the upstream's content blocks, as MCP sends them>], "structuredContent":
<the upstream's, or None>}`, which the front door passes on unchanged. `args_model` only describes the
arguments (their order, types and descriptions) for the console's form and the legacy positional form."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ConfigDict, Field, create_model

from gateway_core.errors import InvalidParams
from gateway_core.operations import Operation, OperationArgs, Risk
from gateway_core.redaction import printable

# Where the console's form cannot show a tool's arguments field by field, it shows one JSON field by this name.
ALL_ARGUMENTS = "arguments"
# What a measured-cost call counts for an image or audio block (its base64 is not what the agent reads).
MEDIA_BLOCK_CHARS = 4000
_INTEGER = re.compile(r"^[+-]?\d+$")


class ToolArguments(OperationArgs):
    """A tool call's arguments once validated against the tool's input schema: exactly the caller's object
    (with the strings the schema wants as numbers or booleans converted), every key kept."""

    model_config = ConfigDict(extra="allow")

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.__pydantic_extra__ or {})


class _ToolForm(OperationArgs):
    """Base of the models that describe a tool's arguments to forms; never used to validate."""


@dataclass(slots=True)
class _CompiledSchema:
    validator: Any = None  # a jsonschema validator (the package has no type hints)


@dataclass(frozen=True, slots=True)
class UpstreamTool(Operation):
    input_schema: Mapping[str, Any] = field(default_factory=dict)  # the tool's inputSchema, as listed
    output_schema: Mapping[str, Any] | None = None  # the tool's outputSchema, where it has one
    annotations: Mapping[str, Any] = field(default_factory=dict)  # the tool's, its risk hints set to `risk`
    # The schema's validator, built on the first call (jsonschema is imported only then).
    _compiled: _CompiledSchema = field(default_factory=_CompiledSchema, compare=False, repr=False)

    @classmethod
    def declare(cls, name: str, description: str, input_schema: Mapping[str, Any], risk: Risk, *,
                output_schema: Mapping[str, Any] | None = None, annotations: Mapping[str, Any] | None = None,
                tokens: int | None = None, cost_usd: float | None = None) -> UpstreamTool:
        """The operation for one listed tool; `annotations` are the tool's own, their risk hints rewritten."""
        enforced = {**(annotations or {}), "readOnlyHint": risk == "read", "destructiveHint": risk == "destructive"}
        return cls(name, _form_model(name, input_schema), risk, description, tokens=tokens, cost_usd=cost_usd,
                   group="tools", input_schema=input_schema, output_schema=output_schema, annotations=enforced)

    @property
    def properties(self) -> dict[str, Any]:
        properties = self.input_schema.get("properties")
        return dict(properties) if isinstance(properties, Mapping) else {}

    @property
    def positional_fields(self) -> list[str]:
        """Legacy positional `args` name the properties in the order the schema lists them."""
        return list(self.properties)

    def parse_args(self, args: list[Any] | dict[str, Any] | None,
                   defaults: Mapping[str, Any] | None = None) -> OperationArgs:
        """Validates positional, object-in-list or named arguments against the tool's input schema; raises
        InvalidParams listing each problem with its field path (`items.0.name`), never the value."""
        named = self._name_arguments(args)
        properties = self.properties
        if set(named) == {ALL_ARGUMENTS} and ALL_ARGUMENTS not in properties and isinstance(
                named[ALL_ARGUMENTS], dict):
            named = dict(named[ALL_ARGUMENTS])  # the console's one JSON field
        for key, value in (defaults or {}).items():
            if key in properties and key not in named:
                named[key] = value
        named = {key: _converted(value, properties.get(key)) for key, value in named.items()}
        # jsonschema reports each missing name as an error of its own, which says the whole `required` list:
        # the same entry comes once per missing name, kept once (a dict keeps the first's place).
        errors = list({(problem["field"], problem["type"]): problem for error in self._validator().iter_errors(named)
                       for problem in _problems(error)}.values())
        if errors:
            listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            raise InvalidParams(f"Invalid arguments for {self.name}: {listed}", {"errors": errors})
        return ToolArguments.model_construct(**named)

    def _first_field_is_object(self) -> bool:
        fields = self.positional_fields
        return bool(fields) and _schema_types(self.properties[fields[0]]) == {"object"}

    def _validator(self) -> Any:
        if self._compiled.validator is None:
            self._compiled.validator = compile_schema(self.input_schema)
        return self._compiled.validator


def compile_schema(schema: Mapping[str, Any]) -> Any:
    """A Draft 2020-12 validator for `schema` (whatever `$schema` it names); SchemaError if it is not one."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def measured_chars(arguments: Mapping[str, Any], data: Mapping[str, Any]) -> int:
    """What a call put into the agent's context, in characters: the arguments' JSON, the text blocks, the
    structured content's JSON only where no text block carries it, and MEDIA_BLOCK_CHARS per image or audio."""
    chars = len(json.dumps(arguments, separators=(",", ":")))
    has_text = False
    for block in data.get("content") or ():
        kind = block.get("type") if isinstance(block, Mapping) else None
        if kind == "text":
            has_text = True
            chars += len(str(block.get("text", "")))
        elif kind in ("image", "audio"):
            chars += MEDIA_BLOCK_CHARS
        elif kind is not None:  # a resource or a link: what it carries, as JSON
            chars += len(json.dumps(block, separators=(",", ":"), default=str))
    structured = data.get("structuredContent")
    if structured is not None and not has_text:
        chars += len(json.dumps(structured, separators=(",", ":"), default=str))
    return chars


# -- describing the arguments to forms ---------------------------------------------------------------------


def _schema_types(schema: Any) -> set[str]:
    """The JSON types a property's schema names (`type`, or a nullable `anyOf` pydantic writes)."""
    if not isinstance(schema, Mapping):
        return set()
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {str(member) for member in kind}
    options = schema.get("anyOf")
    if isinstance(options, list):
        return set().union(*(_schema_types(option) for option in options)) if options else set()
    return set()


def _annotation(schema: Any) -> Any:
    """The type the console's form reads for one property: a checkbox, a choice, a number or text field,
    and a JSON field for anything else (an object, a list, a value of several types)."""
    enum = schema.get("enum") if isinstance(schema, Mapping) else None
    if isinstance(enum, list) and enum and all(isinstance(choice, str) for choice in enum):
        return Literal[tuple(enum)]
    kinds = _schema_types(schema) - {"null"}
    simple = {"string": str, "integer": int, "number": float, "boolean": bool}
    if len(kinds) == 1 and (kind := next(iter(kinds))) in simple:
        return simple[kind]
    if kinds == {"array"}:
        return list[Any]
    return dict[str, Any]  # the form asks for JSON; the schema, not this, decides what is valid


def _description(schema: Any) -> str | None:
    """A property's description, where it is text (a schema is the upstream's: it may say anything there)."""
    description = schema.get("description") if isinstance(schema, Mapping) else None
    return description if isinstance(description, str) else None


def _form_model(tool: str, input_schema: Mapping[str, Any]) -> type[OperationArgs]:
    """A model whose fields are the tool's properties in order, for forms; one JSON field where a property's
    name cannot be a field."""
    properties = input_schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = input_schema.get("required")
    required = set(required) if isinstance(required, list) else set()
    if any(not isinstance(name, str) or name.startswith("_") or hasattr(_ToolForm, name) for name in properties):
        fields: dict[str, Any] = {ALL_ARGUMENTS: (dict[str, Any], Field(
            default_factory=dict, description="the tool's arguments, as a JSON object"))}
    else:
        fields = {name: (_annotation(schema) if name in required else _annotation(schema) | None,
                         Field(... if name in required else None, description=_description(schema)))
                  for name, schema in properties.items()}
    with warnings.catch_warnings():  # a property named like a pydantic attribute was ruled out above
        warnings.simplefilter("ignore")
        # The tool's name is the upstream's: a NUL in it cannot be in a class name (ValueError).
        model: type[OperationArgs] = create_model(f"{printable(tool)} arguments", __base__=_ToolForm, **fields)
    return model


# -- validation ------------------------------------------------------------------------------------------


def _converted(value: Any, schema: Any) -> Any:
    """A string where the schema takes no string but a number, an integer, a boolean, an object or a list,
    read as one: what the slash form's words and the console's text fields give (pydantic reads them so
    for native operations). Anything else is left for the schema to judge."""
    kinds = _schema_types(schema)
    if not isinstance(value, str) or not kinds or "string" in kinds:
        return value
    text = value.strip()
    if "integer" in kinds and _INTEGER.match(text):
        return int(text)
    if "number" in kinds:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return int(number) if _INTEGER.match(text) else number
    if "boolean" in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if kinds & {"object", "array"} and text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return value


# Each failed keyword in words, naming the schema's limit and never the caller's value.
_KEYWORD_MESSAGES = {
    "type": "should be of type {value}",
    "enum": "should be one of {value}",
    "const": "should be {value}",
    "minLength": "should have at least {value} characters",
    "maxLength": "should have at most {value} characters",
    "minimum": "should be at least {value}",
    "maximum": "should be at most {value}",
    "exclusiveMinimum": "should be more than {value}",
    "exclusiveMaximum": "should be less than {value}",
    "multipleOf": "should be a multiple of {value}",
    "pattern": "should match the pattern {value}",
    "format": "should be a {value}",
    "minItems": "should have at least {value} items",
    "maxItems": "should have at most {value} items",
    "uniqueItems": "should have no repeated items",
    "minProperties": "should have at least {value} members",
    "maxProperties": "should have at most {value} members",
    "anyOf": "matches none of the shapes it may take",
    "oneOf": "should match exactly one of the shapes it may take",
    "not": "has a shape it may not take",
}


def _problems(error: Any) -> list[dict[str, Any]]:
    """One jsonschema error as the gateway's `errors` entries: field path, message, the failed keyword."""
    path = [str(part) for part in error.absolute_path]
    keyword = str(error.validator)
    if keyword == "required" and isinstance(error.instance, Mapping):
        return [{"field": ".".join([*path, str(name)]), "message": "Field required", "type": "missing"}
                for name in error.validator_value if name not in error.instance]
    if keyword == "additionalProperties" and isinstance(error.instance, Mapping):
        declared = error.schema.get("properties") or {}
        patterns = error.schema.get("patternProperties") or {}
        unexpected = [name for name in error.instance if name not in declared
                      and not any(re.search(pattern, name) for pattern in patterns)]
        return [{"field": ".".join([*path, str(name)]), "message": "Extra inputs are not permitted",
                 "type": "extra_forbidden"} for name in unexpected]
    template = _KEYWORD_MESSAGES.get(keyword, "does not satisfy " + keyword)
    return [{"field": ".".join(path) or "args", "message": template.format(value=json.dumps(error.validator_value)),
             "type": keyword}]
