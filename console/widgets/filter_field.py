"""The `/` filter line above a table: hidden until opened; typing filters (the screen hears Input.Changed);
enter returns to the table keeping the filter; esc clears it and returns."""

from __future__ import annotations

from textual.widgets import Input

from console.keymap import FILTER_KEYS, bindings


class FilterField(Input):
    BINDINGS = bindings(FILTER_KEYS)

    def __init__(self, placeholder: str, table_id: str, *, id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id)
        self.table_id = table_id

    def on_mount(self) -> None:
        self.display = False

    def open(self) -> None:
        self.display = True
        self.focus()

    def action_close(self) -> None:
        self.value = ""
        self.display = False
        self.screen.query_one(f"#{self.table_id}").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = bool(self.value.strip())
        self.screen.query_one(f"#{self.table_id}").focus()
