"""What every screen of the console shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.screen import Screen

if TYPE_CHECKING:
    from console.app import ConsoleApp


class ConsoleScreen(Screen[None]):
    @property
    def console(self) -> ConsoleApp:
        """The app, typed: the data (runtime, pending queue, recent calls) the screen draws."""
        return self.app  # type: ignore[return-value]
