"""The line at the top of every screen: where the gateway listens, whether the orchestrator is reachable,
how many requests wait, and today's totals (k9s's header: which cluster, and is it up). Parts that do not
fit the width are left out least important first, so a narrow terminal keeps what matters: the link, the
count waiting, today's cost and READ-ONLY."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import Static

from gateway_core.redaction import printable

SEPARATOR = " │ "
HeaderPart = tuple[str, int]  # the text, and how readily it is left out (0: never)


def fitted(parts: Sequence[HeaderPart], width: int) -> str:
    """The parts that fit `width`, in their order, dropping the most droppable first."""
    kept = list(parts)
    while len(kept) > 1 and len(SEPARATOR.join(text for text, _ in kept)) > width:
        droppable = max(kept, key=lambda part: part[1])
        if droppable[1] == 0:
            break
        kept.remove(droppable)
    return SEPARATOR.join(text for text, _ in kept)


class StatusHeader(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, markup=False)  # it names an operator and hosts others chose: text, not markup

    def on_mount(self) -> None:
        self.watch(self.app, "status", self._show)

    def on_resize(self) -> None:
        self._show(getattr(self.app, "status", ()))

    def _show(self, parts: Sequence[HeaderPart]) -> None:
        # One line, always: a repaint, never a relayout of the screen.
        self.update(printable(fitted(parts, self.content_size.width or self.size.width)), layout=False)
