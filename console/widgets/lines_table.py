"""A read-only table that draws only the lines on screen, from rows of text it is handed. For the live
views (services, calls, cost by agent): a DataTable's per-row bookkeeping and full repaints cost too much
at hundreds of calls a second, and on every screen switch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    width: int
    right: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    cells: tuple[str, ...]
    tone: str | None = None  # "warning" or "error" colours the row


def format_line(columns: Sequence[Column], cells: Iterable[str]) -> str:
    parts = []
    for column, cell in zip(columns, cells, strict=True):
        text = cell if len(cell) <= column.width else cell[: column.width - 1] + "…"
        parts.append(" " + (text.rjust(column.width) if column.right else text.ljust(column.width)))
    return "".join(parts)


class LinesTable(ScrollView, can_focus=True):
    """With `cursor=True` a row is selected (up/down, enter posts `RowChosen`)."""

    COMPONENT_CLASSES = {"lines-table--header", "lines-table--warning", "lines-table--error", "lines-table--cursor"}
    DEFAULT_CSS = """
    LinesTable > .lines-table--header { text-style: bold; color: $text-accent; }
    LinesTable > .lines-table--warning { color: $text-warning; }
    LinesTable > .lines-table--error { color: $text-error; }
    LinesTable > .lines-table--cursor { background: $block-cursor-blurred-background; }
    LinesTable:focus > .lines-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "up", show=False),
        Binding("down", "move(1)", "down", show=False),
        Binding("pageup", "move(-10)", "page up", show=False),
        Binding("pagedown", "move(10)", "page down", show=False),
        Binding("enter", "choose", "choose", show=False),
    ]

    rows: list[Row]
    cursor_row: int | None

    class RowChosen(Message):
        def __init__(self, table: LinesTable, row: Row) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> LinesTable:
            return self.table

    def __init__(self, columns: Sequence[Column], *, cursor: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self.cursor_row = 0 if cursor else None
        self.line_width = sum(column.width + 1 for column in self.columns) + 1
        self.rows = []
        self._lines: list[tuple[str, str | None]] = []

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def row(self, key: str) -> tuple[str, ...] | None:
        return next((row.cells for row in self.rows if row.key == key), None)

    @property
    def chosen(self) -> Row | None:
        """The row under the cursor."""
        if self.cursor_row is None or not self.rows:
            return None
        return self.rows[min(self.cursor_row, len(self.rows) - 1)]

    def action_move(self, by: int) -> None:
        if self.cursor_row is None or not self.rows:
            return
        self.cursor_row = max(0, min(len(self.rows) - 1, self.cursor_row + by))
        top, visible = self.scroll_offset.y, max(1, self.size.height - 1)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)
        self.refresh()

    def action_choose(self) -> None:
        if (row := self.chosen) is not None:
            self.post_message(self.RowChosen(self, row))

    def show(self, rows: list[Row]) -> None:
        """Replaces the rows; repaints only when something on them changed."""
        if rows == self.rows:
            return
        self.rows = rows
        self._lines = [(format_line(self.columns, row.cells), row.tone) for row in rows]
        self.virtual_size = Size(self.line_width, len(rows) + 1)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:  # the header stays put while the rows scroll
            text, style = format_line(self.columns, (c.title for c in self.columns)), self._style("header")
        else:
            index = scroll_y + y - 1
            if index >= len(self._lines):
                return Strip.blank(width, self.rich_style)
            text, tone = self._lines[index]
            style = self._style(tone) if tone else self.rich_style
            if self.cursor_row is not None and index == min(self.cursor_row, len(self._lines) - 1):
                style += self.get_component_rich_style("lines-table--cursor")
        strip = Strip([Segment(text.ljust(self.line_width), style)]).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, self.rich_style)

    def _style(self, name: str) -> Style:
        return self.rich_style + self.get_component_rich_style(f"lines-table--{name}")
