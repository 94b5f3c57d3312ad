"""A form generated from an operation's argument model: a checkbox for a flag, a choice for a Literal, a
picker where the operation declares one (filled by the caller from the operation it names), a text field
for the rest. What it returns is validated by the gateway, like any agent's arguments."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Checkbox, Input, Label, Select

from console.formatting import literal
from gateway_core.models import parse_json_text
from gateway_core.operations import Operation, Picker
from gateway_core.redaction import printable


def field_id(name: str) -> str:
    """The widget id of the field for argument `name`: `field-` and the name, any character but an ASCII letter,
    digit or underscore written as `-<hex>-`. An MCP tool's property may be called "user.name" or "ключ",
    which Textual refuses as an id (and the form, and the console with it, would fail)."""
    return "field-" + "".join(char if char.isascii() and (char.isalnum() or char == "_") else f"-{ord(char):x}-"
                              for char in name)


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    info: FieldInfo
    kind: Literal["flag", "choice", "picker", "number", "integer", "json", "text"]
    choices: tuple[str, ...] = ()
    picker: Picker | None = None  # where a picker's choices come from

    @property
    def required(self) -> bool:
        return self.info.is_required()

    @property
    def default(self) -> Any:
        return None if self.required else self.info.get_default(call_default_factory=True)


def _bare(annotation: Any) -> Any:
    """`X | None` → X."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def form_fields(operation: Operation) -> list[FormField]:
    fields = []
    for name, info in operation.args_model.model_fields.items():
        annotation = _bare(info.annotation)
        picker = operation.pickers.get(name)
        if picker is not None:
            fields.append(FormField(name, info, "picker", picker=picker))
        elif annotation is bool:
            fields.append(FormField(name, info, "flag"))
        elif get_origin(annotation) is Literal:
            fields.append(FormField(name, info, "choice", tuple(str(choice) for choice in get_args(annotation))))
        elif annotation is int:
            fields.append(FormField(name, info, "integer"))
        elif annotation is float:
            fields.append(FormField(name, info, "number"))
        elif get_origin(annotation) in (dict, list) or annotation in (dict, list):  # an object or a list: JSON
            fields.append(FormField(name, info, "json"))
        else:
            fields.append(FormField(name, info, "text"))
    return fields


class OperationForm(Vertical):
    """The fields of one operation; `values()` gives the arguments that were set."""

    def __init__(self, fields: list[FormField], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fields = fields
        self.picked_names: dict[str, dict[str, str]] = {}  # picker → value → the resource's name

    def compose(self) -> ComposeResult:
        # Names, descriptions and choices may come from an MCP server's schema: shown as text, never as markup.
        for field in self.fields:
            label = printable(field.name) + (" *" if field.required else "")
            if field.info.description:
                label += f"  ({printable(field.info.description)})"
            if field.kind == "flag":
                yield Checkbox(Content(label), bool(field.default), id=field_id(field.name))
                continue
            yield Label(label, markup=False)
            if field.kind == "choice":
                yield Select([(Text(printable(choice)), choice) for choice in field.choices], id=field_id(field.name),
                             value=field.default if field.default is not None else Select.NULL,
                             allow_blank=not field.required or field.default is None)
            elif field.kind == "picker":
                yield Select([], id=field_id(field.name), prompt=f"loading {field.picker.operation}…"
                             if field.picker else "")
            else:
                default = field.default
                initial = "" if default is None or default == {} else (
                    json.dumps(default) if field.kind == "json" else str(default))
                yield Input(initial, id=field_id(field.name), placeholder=field.kind if field.kind != "text" else "",
                            type=field.kind if field.kind in ("integer", "number") else "text")

    def fill_picker(self, name: str, resources: list[tuple[str, str]], problem: str | None = None) -> None:
        """`resources` are (name, uuid) pairs."""
        picker = self.query_one(f"#{field_id(name)}", Select)
        self.picked_names[name] = {uuid: resource for resource, uuid in resources}
        picker.set_options([(Text(printable(f"{resource} ({uuid})")), uuid) for resource, uuid in resources])
        picker.prompt = literal(printable(problem)) if problem else ("choose one" if resources else "none found")

    def values(self) -> dict[str, Any]:
        """The arguments the operator set; raises ValueError for a JSON field that does not parse."""
        values: dict[str, Any] = {}
        for field in self.fields:
            widget = self.query_one(f"#{field_id(field.name)}")
            if isinstance(widget, Checkbox):
                if widget.value or field.default is not None:
                    values[field.name] = widget.value
            elif isinstance(widget, Select):
                if widget.value is not Select.NULL:
                    values[field.name] = widget.value
            elif isinstance(widget, Input) and widget.value.strip():
                text = widget.value.strip()
                if field.kind == "json":  # as the gateway's door takes a body
                    values[field.name] = parse_json_text(text, field.name)
                else:
                    values[field.name] = text
        return values

    def mark(self, problems: dict[str, str]) -> None:
        """Marks the fields the operation's argument model refused (`problems`: field → why), clears the rest."""
        for field in self.fields:
            widget = self.query_one(f"#{field_id(field.name)}")
            widget.set_class(field.name in problems, "-invalid")
            problem = problems.get(field.name)
            widget.tooltip = None if problem is None else Text(printable(problem))

    def label_of(self, name: str) -> str | None:
        """The shown name of the resource chosen in a picker (what a destructive action makes you type)."""
        widget = self.query_one(f"#{field_id(name)}")
        if isinstance(widget, Select) and isinstance(widget.value, str):
            return self.picked_names.get(name, {}).get(widget.value, widget.value)
        if isinstance(widget, Input):
            return widget.value.strip() or None
        return None
