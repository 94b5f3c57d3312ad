"""The line at the top of every screen: where the gateway listens, whether the orchestrator is reachable,
how many requests wait, and today's totals (k9s's header: which cluster, and is it up)."""

from __future__ import annotations

from textual.widgets import Static


class StatusHeader(Static):
    def on_mount(self) -> None:
        self.watch(self.app, "status_line", self._show)

    def _show(self, line: str) -> None:
        self.update(line, layout=False)  # one line, always: a repaint, never a relayout of the screen
