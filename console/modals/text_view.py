"""A text on the whole screen (a request as it was asked, an audit entry), scrollable; esc closes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.keymap import TEXT_VIEW_KEYS, bindings
from console.widgets.keys_footer import KeysFooter
from gateway_core.redaction import printable


class TextView(ModalScreen[None]):
    BINDINGS = bindings(TEXT_VIEW_KEYS)
    AUTO_FOCUS = "#text-view"

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="text-view"):
            yield Static(printable(self.title_text), classes="section-title", markup=False)
            yield Static(self.text, markup=False)
        yield KeysFooter()

    def action_close(self) -> None:
        self.dismiss(None)
