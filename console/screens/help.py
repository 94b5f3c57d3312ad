"""`?`: every key the console knows, by where it works, read from the keymap (so a remapped key shows
as remapped)."""

from __future__ import annotations

from collections.abc import Mapping

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from console.formatting import literal
from console.keymap import HELP_KEYS, SECTIONS, bindings, shown_keys


class HelpScreen(ModalScreen[None]):
    BINDINGS = bindings(HELP_KEYS)

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
                # Padded, then escaped: a `[` key is text, not markup, and its escape takes no column.
                shown = literal(f"{shown_keys(self.app, keymap, key):<12}")
                lines.append(f"  {shown} {key.description:<24} [dim]{key.id}[/dim]")
            lines.append("")
        lines.append("[b]Also[/b]")
        lines.append(f"  {'ctrl+p':<12} command palette: screens, services, operations, requests")
        with VerticalScroll(id="help-dialog"):
            yield Static("\n".join(lines), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
