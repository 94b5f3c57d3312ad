"""What every screen of the console shares: the console's state, handed over at construction."""

from __future__ import annotations

from textual.screen import Screen

from console.state import ConsoleState


class ConsoleScreen(Screen[None]):
    def __init__(self, state: ConsoleState) -> None:
        super().__init__()
        self.state = state
