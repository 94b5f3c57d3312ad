"""`?`: every key the console knows, by where it works, read from the keymap (so a remapped key shows
as remapped)."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.keymap import SECTIONS


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "close")]

    def __init__(self, keymap: Mapping[str, str]) -> None:
        """`keymap`: the config file's remapping, binding id → keys."""
        super().__init__()
        self.keymap = keymap

    def compose(self) -> ComposeResult:
        keymap = self.keymap
        lines = ["[b]mcp-console keys[/b]   (esc closes; remap any of them in [console.keys] by id)", ""]
        for title, keys in SECTIONS:
            lines.append(f"[b]{title}[/b]")
            for key in keys:
                shown = ", ".join(self.app.get_key_display(Binding(k, "")) for k in
                                  keymap.get(key.id, key.keys).split(","))
                shown = shown.replace("[", "\\[")  # a key like [ is text, not the start of markup
                lines.append(f"  {shown:<12} {key.description:<24} [dim]{key.id}[/dim]")
            lines.append("")
        lines.append("[b]Also[/b]")
        lines.append(f"  {'ctrl+p':<12} command palette: screens, services, operations, requests")
        lines.append(f"  {'y':<12} confirm a destructive approval (after a, s or o)")
        with VerticalScroll(id="help-dialog"):
            yield Static("\n".join(lines), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
