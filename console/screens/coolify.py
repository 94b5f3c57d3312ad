"""`c`: Coolify by hand. The operations grouped by resource, a form generated from the chosen one's
argument model, pickers filled from the list operations, a confirmation before a write and a typed name
before anything destructive. Every call goes through the gateway as `operator:<login>`: costed,
recorded, audited and shown in the calls table like an agent's."""

from __future__ import annotations

import json
from typing import Any

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option

from console.keymap import COOLIFY_KEYS, bindings
from console.modals.confirm import ConfirmModal
from console.screens.base import ConsoleScreen
from console.widgets.keys_footer import KeysFooter
from console.widgets.operation_form import OperationForm, form_fields
from console.widgets.status_header import StatusHeader
from gateway_core.handlers.coolify import CoolifyHandler
from gateway_core.operations import Operation, OperationTable, Picker
from gateway_core.redaction import redacted

OPERATIONS: OperationTable = CoolifyHandler.operations


def picker_choices(data: dict[str, Any], picker: Picker) -> list[tuple[str, str]]:
    """(label, value) pairs from the picker's list operation's answer."""
    items = data.get(picker.items, [])
    return [(str(item.get(picker.label) or item[picker.value]), str(item[picker.value]))
            for item in items if isinstance(item, dict) and item.get(picker.value)]


class CoolifyScreen(ConsoleScreen):
    BINDINGS = bindings(COOLIFY_KEYS)
    AUTO_FOCUS = "#operations"

    def __init__(self) -> None:
        super().__init__()
        self.selected: Operation | None = None
        self.result_text = ""  # the JSON on screen

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Horizontal(id="coolify-body"):
            options: list[Option | None] = []
            for group, operations in OPERATIONS.grouped().items():
                options.append(Option(f"[b]{group}[/b]", id=f"group-{group}", disabled=True))
                options += [Option(f"  {operation.name}" + ("  !" if operation.risk == "destructive" else ""),
                                   id=operation.name) for operation in operations]
            yield OptionList(*options, id="operations")
            with Vertical(id="operation-pane"):
                yield Static("Choose an operation on the left (enter).", id="operation-title")
                yield VerticalScroll(id="form-area")
                yield Button("Run (ctrl+r)", id="run", variant="primary", disabled=True)
                yield Static("", id="operation-status")
                with VerticalScroll(id="result-area"):
                    yield Static("", id="result")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#operations", OptionList).focus()

    def action_focus_operations(self) -> None:
        self.query_one("#operations", OptionList).focus()

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            await self.choose(event.option.id)

    async def choose(self, operation_name: str) -> None:
        """Shows the form of this operation (also what the command palette calls)."""
        operation = OPERATIONS[operation_name]
        self.selected = operation
        self.query_one("#operation-title", Static).update(
            f"[b]{operation.name}[/b]  ({operation.risk})  {operation.description}")
        area = self.query_one("#form-area", VerticalScroll)
        await area.remove_children()
        form = OperationForm(form_fields(operation), id="form")
        await area.mount(form)
        self.query_one("#run", Button).disabled = False
        self.query_one("#operation-status", Static).update("")
        self.query_one("#result", Static).update("")
        self.result_text = ""
        for field in form.fields:
            if field.picker is not None:
                self._fill_picker(form, field.name, field.picker)
        focusable = form.query("Input, Select, Checkbox")
        (focusable.first().focus() if focusable else self.query_one("#run", Button).focus())

    @work(exit_on_error=False, group="pickers")
    async def _fill_picker(self, form: OperationForm, field_name: str, picker: Picker) -> None:
        outcome = await self.console.operator_call(picker.operation, {})
        if not form.is_attached:
            return
        if outcome.error is not None:
            form.fill_picker(field_name, [], f"could not list: {outcome.error.message}")
        else:
            data = outcome.result.data if outcome.result is not None else {}
            form.fill_picker(field_name, picker_choices(data, picker))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run":
            self.action_run()

    @work(exit_on_error=False, group="coolify-run", exclusive=True)
    async def action_run(self) -> None:
        operation = self.selected
        if operation is None:
            return
        form = self.query_one("#form", OperationForm)
        status = self.query_one("#operation-status", Static)
        try:
            args = form.values()
        except ValueError as exc:
            status.update(f"[red]{exc}[/red]")
            return
        target = (form.label_of(operation.target.argument) if operation.target else None) or args.get("name") \
            or operation.name
        if operation.risk == "destructive":
            question = f"[b]{operation.name}[/b] on [b]{target}[/b] is destructive."
            if not await self.app.push_screen_wait(ConfirmModal(question, typed_name=str(target))):
                status.update("cancelled")
                return
        elif operation.risk == "write" and not await self.app.push_screen_wait(
                ConfirmModal(f"Run [b]{operation.name}[/b] on [b]{target}[/b]?")):
            status.update("cancelled")
            return
        status.update(f"running {operation.name}…")
        outcome = await self.console.operator_call(operation.name, args)
        if outcome.error is not None:
            error = outcome.error
            status.update(f"[red]{error.name} ({error.code}): {error.message}[/red]")
            shown: Any = redacted(error.to_error_object())
        elif outcome.result is not None:
            metadata = outcome.result.metadata
            status.update(f"[green]success[/green] in {metadata.executionTime} ms, {metadata.tokensUsed} tokens, "
                          f"${metadata.cost:.4f}")
            shown = redacted(outcome.result.data)  # the operator's screen shows no secret Coolify hands back
        self.result_text = json.dumps(shown, indent=2, sort_keys=True, default=str)
        self.query_one("#result", Static).update(
            Syntax(self.result_text, "json", theme="ansi_dark", word_wrap=True, background_color="default"))

