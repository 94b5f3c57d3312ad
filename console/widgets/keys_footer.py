"""The bottom line: the keys that work on this screen, from its bindings (so a remapped key shows as
remapped). One line of text, redrawn when the screen is shown: Textual's Footer rebuilds a widget per
key on every screen switch, which cost more than the rest of the switch together."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class KeysFooter(Static):
    DEFAULT_CSS = """
    KeysFooter { dock: bottom; height: 1; background: $footer-background; color: $footer-foreground; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self.show_keys())
        self.show_keys()

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def show_keys(self) -> None:
        line = Text(no_wrap=True, overflow="ellipsis")
        seen: set[str] = set()
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if not binding.show or not active.enabled or binding.description in seen:  # only keys that act
                continue
            seen.add(binding.description)
            line.append(f" {self.app.get_key_display(binding)} ", style="bold reverse")
            line.append(f"{binding.description} ")
        line.append(" ^p ", style="bold reverse")
        line.append("palette")
        self.update(line)
