"""The console's terminal, and what happens when it goes away (an SSH session dropped, tmux killed, the pty
closed). Whichever thread notices first reports it, once: Textual's writer thread when a write fails, its
input thread when a read fails, or a watcher that sees the hangup on the terminal's descriptors (a lost
pty reads as an endless EOF, which Textual's input thread would only spin on). From then on nothing
writes to the terminal or waits on it, so the app can stop cleanly."""

from __future__ import annotations

import io
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

from textual.app import App
from textual.drivers.linux_driver import LinuxDriver


class TerminalOutput(io.TextIOWrapper):
    """The terminal's output as Textual's writer thread uses it, except that a failed write or flush reports
    the terminal lost instead of raising (which would end the thread, leaving its bounded queue to fill and
    block whoever writes next: the event loop), and that once the terminal is lost every write is dropped."""

    def __init__(self, terminal: io.TextIOWrapper, report_lost: Callable[[], None]) -> None:
        buffer = io.BufferedWriter(io.FileIO(terminal.fileno(), "w", closefd=False))
        super().__init__(buffer, encoding=terminal.encoding, errors=terminal.errors)
        self.lost = False  # set (once) by whoever notices first; the only cost a frame pays
        self._report_lost = report_lost

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return super().write(text)
            except (OSError, ValueError):
                self._report_lost()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                super().flush()
            except (OSError, ValueError):
                self._report_lost()


def console_driver(on_terminal_lost: Callable[[], None]) -> type[LinuxDriver]:
    """Textual's LinuxDriver, made to survive losing its terminal: `on_terminal_lost` is called once, from
    whichever thread notices, and must be safe to call from any thread."""

    class ConsoleDriver(LinuxDriver):
        def __init__(self, app: App[Any], *, debug: bool = False, mouse: bool = True,
                     size: tuple[int, int] | None = None) -> None:
            super().__init__(app, debug=debug, mouse=mouse, size=size)
            terminal = sys.__stderr__  # where Textual draws
            assert terminal is not None, "the console runs on a terminal (console.cli refuses otherwise)"
            self._reporting = threading.Lock()
            self._output = self._file = TerminalOutput(terminal, self._report_terminal_lost)
            threading.Thread(target=self._wait_for_hangup, args=(self.fileno, terminal.fileno()),
                             name="terminal-watch", daemon=True).start()

        def run_input_thread(self) -> None:
            try:
                super().run_input_thread()
            except OSError:  # EIO: the terminal is gone (Textual would panic and print to it)
                self._report_terminal_lost()

        def _wait_for_hangup(self, *descriptors: int) -> None:
            hangup = select.poll()
            for descriptor in descriptors:
                hangup.register(descriptor, 0)  # no events asked for: only a hangup or an error is reported
            hangup.poll()
            self._report_terminal_lost()

        def _report_terminal_lost(self) -> None:
            with self._reporting:
                if self._output.lost:
                    return
                self._output.lost = True
            self.exit_event.set()  # Textual's input thread stops reading, and disable_input finds nothing to do
            on_terminal_lost()

    return ConsoleDriver
