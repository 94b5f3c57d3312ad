"""A yes/no question before anything that changes something; for a destructive action the operator types
the target's name, so no single key can do it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from gateway_core.redaction import printable


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "yes", show=False),
        Binding("n", "answer(False)", "no", show=False),
        Binding("escape", "answer(False)", "cancel"),
    ]

    def __init__(self, question: Content, typed_name: str | None = None) -> None:
        """`question`: markup already made into Content, the names in it taken as text (see Content.from_markup's
        variables); `typed_name`, a name the operator must type to go ahead."""
        super().__init__()
        self.question = question
        self.typed_name = typed_name

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="destructive" if self.typed_name else ""):
            yield Static(self.question, id="confirm-question")
            if self.typed_name is not None:
                yield Static(f"Type {printable(self.typed_name)} and press enter to go ahead; esc cancels.",
                             id="confirm-hint", markup=False)
                yield Input(placeholder=printable(self.typed_name), id="confirm-name")
            else:
                yield Static("y go ahead   n or esc cancel", id="confirm-hint", markup=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # With a name to type, letters go to the field; only esc (answer False) is a key.
        return self.typed_name is None or parameters == (False,)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip() == self.typed_name:
            self.dismiss(True)
        else:
            self.query_one("#confirm-hint", Static).update(
                f"That is not {printable(self.typed_name or '')}. Type it exactly, or esc to cancel.")
