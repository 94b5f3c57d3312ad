"""`c`: any service's operations by hand, built from their declarations alone: grouped as declared, a form
generated from the chosen one's argument model, pickers filled by the operations the declaration names, a
confirmation before a write and a typed name before anything destructive. `[` and `]` go to the other
services that declare operations. Every call goes through the gateway as `operator:<login>`: costed,
recorded, audited and shown in the calls table like an agent's."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Button, OptionList, Static
from textual.widgets.option_list import Option, OptionDoesNotExist

from console.keymap import OPERATIONS_KEYS, bindings
from console.messages import OpenOperations, ToolsChanged
from console.modals.confirm import ConfirmModal
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.keys_footer import KeysFooter
from console.widgets.operation_form import OperationForm, form_fields
from console.widgets.status_header import StatusHeader
from gateway_core.errors import GatewayError, InvalidParams
from gateway_core.operations import Operation, Picker
from gateway_core.operator_api import ServiceView
from gateway_core.redaction import printable, redacted


def picker_choices(data: dict[str, Any], picker: Picker) -> list[tuple[str, str]]:
    """(label, value) pairs from the picker's list operation's answer."""
    items = data.get(picker.items, [])
    return [(str(item.get(picker.label) or item[picker.value]), str(item[picker.value]))
            for item in items if isinstance(item, dict) and item.get(picker.value)]


CHOOSE_AN_OPERATION = "Choose an operation on the left (enter)."


class OperationsScreen(ConsoleScreen):
    BINDINGS = bindings(OPERATIONS_KEYS)
    AUTO_FOCUS = "#operations"

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.service: ServiceView | None = None
        self.selected: Operation | None = None
        self.result_text = ""  # the JSON on screen

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Horizontal(id="operations-body"):
            with Vertical(id="operations-pane"):
                yield Static("", id="service-title")
                yield OptionList(id="operations")
            with Vertical(id="operation-pane"):
                yield Static(CHOOSE_AN_OPERATION, id="operation-title")
                yield VerticalScroll(id="form-area")
                yield Button("Run (ctrl+r)", id="run", variant="primary", disabled=True)
                yield Static("", id="operation-status")
                with VerticalScroll(id="result-area"):
                    yield Static("", id="result")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#operations", OptionList).focus()

    def on_screen_resume(self) -> None:
        if self.service is None:
            self.show_service(None)

    def on_tools_changed(self, message: ToolsChanged) -> None:
        self.show_service(None)  # the service shown, with its operations as listed now

    def _services(self) -> list[ServiceView]:
        """The services that declare operations, configured ones first."""
        services = [service for service in self.state.gateway.services() if service.operations] \
            if self.state.gateway is not None else []
        return sorted(services, key=lambda service: not service.configured)

    def show_service(self, name: str | None) -> None:
        """Lists `name`'s operations (None: the one shown, else the first configured service)."""
        services = self._services()
        wanted = name or (self.service.name if self.service else None)
        service = next((s for s in services if s.name == wanted), services[0] if services else None)
        shown = self.service.name if self.service is not None else None
        # A form runs only against the service it was made for, and only an operation the service still lists.
        if self.selected is not None and (service is None or service.name != shown
                                          or service.operations.get(self.selected.name) is None):
            self._clear_operation()
        self.service = service
        title = self.query_one("#service-title", Static)
        options = self.query_one("#operations", OptionList)
        highlighted = options.highlighted_option.id if options.highlighted_option is not None else None
        options.clear_options()
        if service is None:
            title.update("starting…" if self.state.gateway is None else "no service declares operations")
            return
        # Names and descriptions come from MCP servers too: text put into markup as values, never read as it,
        # and printable() (no control character reaches the terminal).
        others = "   [ ] other services" if len(services) > 1 else ""
        title.update(Content.from_markup("[b]$name[/b]$rest", name=printable(service.name),
                                         rest=("" if service.configured else " (not configured)") + others))
        for group, operations in service.operations.grouped().items():
            options.add_option(Option(Content.from_markup("[b]$group[/b]", group=printable(group)), id=f"group-{group}",
                                      disabled=True))
            options.add_options([Option(Content(f"  {printable(operation.name)}" + (
                "  !" if operation.risk == "destructive" else "")), id=operation.name)
                                 for operation in operations])
        # An operation highlighted at once (the first enter opens it: it did nothing), the same one after a
        # relisting (an MCP server's new tools) where it is still listed.
        choosable = [index for index in range(options.option_count) if not options.get_option_at_index(index).disabled]
        again = [index for index in choosable if options.get_option_at_index(index).id == highlighted]
        options.highlighted = next(iter(again or choosable), None)

    def _clear_operation(self) -> None:
        """Back to no operation chosen: no form, nothing to run, no result."""
        self.selected = None
        self.query_one("#operation-title", Static).update(CHOOSE_AN_OPERATION)
        self.query_one("#form-area", VerticalScroll).remove_children()
        self.query_one("#run", Button).disabled = True
        self.query_one("#operation-status", Static).update("")
        self.query_one("#result", Static).update("")
        self.result_text = ""

    def action_other_service(self, step: int) -> None:
        services = self._services()
        if self.service is None or len(services) < 2:
            return
        names = [service.name for service in services]
        self.show_service(names[(names.index(self.service.name) + step) % len(names)])

    async def on_open_operations(self, message: OpenOperations) -> None:
        message.stop()  # the app sent it here: it must not bubble back
        self.show_service(message.service)
        if message.operation is not None:
            await self.choose(message.operation)

    def action_focus_operations(self) -> None:
        self.query_one("#operations", OptionList).focus()

    async def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            await self.choose(event.option.id)

    async def choose(self, operation_name: str) -> None:
        """Shows the form of this operation of the service shown."""
        service = self.service
        operation = service.operations.get(operation_name) if service is not None else None
        if service is None or operation is None:
            return
        self.selected = operation
        # The list shows which operation the form is for (the palette opens forms too).
        options = self.query_one("#operations", OptionList)
        with contextlib.suppress(OptionDoesNotExist):
            options.highlighted = options.get_option_index(operation.name)
        self.query_one("#operation-title", Static).update(Content.from_markup(
            "[b]$name[/b]  ($risk)  $description", name=printable(operation.name), risk=operation.risk,
            description=printable(operation.description)))
        area = self.query_one("#form-area", VerticalScroll)
        await area.remove_children()
        # The first field, focused below, is at the top: a scroll kept from a longer form would hide it.
        area.scroll_home(animate=False, immediate=True)
        form = OperationForm(form_fields(operation), id="form")
        await area.mount(form)
        self.query_one("#run", Button).disabled = False
        self.query_one("#operation-status", Static).update("")
        self.query_one("#result", Static).update("")
        self.result_text = ""
        for field in form.fields:
            if field.picker is not None:
                self._fill_picker(form, service.name, field.name, field.picker)
        focusable = form.query("Input, Select, Checkbox")
        (focusable.first().focus() if focusable else self.query_one("#run", Button).focus())

    @work(exit_on_error=False, group="pickers")
    async def _fill_picker(self, form: OperationForm, service_name: str, field_name: str, picker: Picker) -> None:
        if self.state.gateway is None:
            return
        try:
            outcome = await self.state.gateway.run(service_name, picker.operation, {})
            error, result = outcome.error, outcome.result
        except GatewayError as exc:  # a gateway elsewhere that cannot be reached
            error, result = exc, None
        if not form.is_attached:
            return
        if error is not None:
            form.fill_picker(field_name, [], f"could not list: {error.message}")
        else:
            form.fill_picker(field_name, picker_choices(result.data if result is not None else {}, picker))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run":
            self.action_run()

    @work(exit_on_error=False, group="operation-run", exclusive=True)
    async def action_run(self) -> None:
        operation, service, gateway = self.selected, self.service, self.state.gateway
        if operation is None or service is None or gateway is None:
            return
        form = self.query_one("#form", OperationForm)
        status = self.query_one("#operation-status", Static)
        try:
            args = form.values()
            operation.parse_args(args)  # what the gateway will check, checked before anything is sent
        except ValueError as exc:
            status.update(Content.from_markup("[red]$problem[/red]", problem=printable(str(exc))))
            return
        except InvalidParams as exc:
            problems = {str(error["field"]).split(".")[0]: str(error["message"])
                        for error in (exc.data or {}).get("errors", [])}
            form.mark(problems)
            status.update(Content.from_markup("[red]$problems[/red]", problems=printable("; ".join(
                f"{field}: {message}" for field, message in problems.items()))))
            return
        form.mark({})
        target_value = str(args.get(operation.target.argument, "")) if operation.target else ""
        name = (form.label_of(operation.target.argument) if operation.target else None) or args.get("name")
        target = f"{name} ({target_value})" if name and target_value and name != target_value else \
            str(name or target_value)
        # "mem0 remember", "coolify stop-application on web (app1)": the call named as it will be made.
        call = Content.from_markup("[b]$service $operation[/b]" + (" on [b]$target[/b]" if target else ""),
                                   service=printable(service.name), operation=printable(operation.name),
                                   target=printable(target))
        if operation.risk == "destructive":
            question = Content.assemble(call, " is destructive.")
            typed_name = str(name or target or operation.name)  # with no target, the operation's own name
            if not await self.app.push_screen_wait(ConfirmModal(question, typed_name)):
                status.update("cancelled")
                return
        elif operation.risk == "write" and not await self.app.push_screen_wait(
                ConfirmModal(Content.assemble("Run ", call, "?"))):
            status.update("cancelled")
            return
        status.update(Content(f"running {printable(operation.name)}…"))
        try:
            outcome = await gateway.run(service.name, operation.name, args)
            error, result = outcome.error, outcome.result
        except GatewayError as exc:  # a gateway elsewhere that cannot be reached (or did not answer)
            error, result = exc, None
        if error is not None:
            status.update(Content.from_markup("[red]$name ($code): $message[/red]", name=error.name,
                                              code=str(error.code), message=printable(error.message)))
            outcome_shown: Any = redacted(error.to_error_object())
        elif result is not None:
            metadata = result.metadata
            status.update(f"[green]success[/green] in {metadata.executionTime} ms, {metadata.tokensUsed} tokens, "
                          f"${metadata.cost:.4f}")
            outcome_shown = redacted(result.data)  # the operator's screen shows no secret Coolify hands back
        self.result_text = json.dumps(outcome_shown, indent=2, sort_keys=True, default=str)
        self.query_one("#result", Static).update(
            Syntax(self.result_text, "json", theme="ansi_dark", word_wrap=True, background_color="default"))

