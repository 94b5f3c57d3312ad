"""A read-only table that draws only the lines on screen, from rows of text it is handed. For the live
views (services, calls, cost by agent): a DataTable's per-row bookkeeping and full repaints cost too much
at hundreds of calls a second, and on every screen switch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.keymap import TABLE_KEYS, bindings
from gateway_core.redaction import printable


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    width: int
    right: bool = False
    grows: bool = False  # takes the table's spare width, as far as its longest cell needs (names)


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    cells: tuple[str, ...]
    tone: str | None = None  # "warning" or "error" colours the row
    spans: bool = False  # one text across the whole line (cells[0]), not a cell per column


def format_line(widths: Sequence[int], columns: Sequence[Column], cells: Iterable[str]) -> str:
    parts = []
    for width, column, cell in zip(widths, columns, cells, strict=True):
        cell = printable(cell)
        text = cell if len(cell) <= width else cell[: width - 1] + "…"
        parts.append(" " + (text.rjust(width) if column.right else text.ljust(width)))
    return "".join(parts)


def fitted_widths(columns: Sequence[Column], rows: Sequence[Row], room: int) -> list[int]:
    """Each column's width: its own, and for growing columns more from `room` (spare width), as needed."""
    widths = [column.width for column in columns]
    for index in reversed(range(len(columns))):  # right to left: an operation's name before an agent's
        column = columns[index]
        if column.grows and room > 0:
            longest = max((len(row.cells[index]) for row in rows if not row.spans), default=0)
            extra = min(room, max(0, longest - column.width))
            widths[index] += extra
            room -= extra
    return widths


class LinesTable(ScrollView, can_focus=True):
    """With `cursor=True` a row is selected (up/down, enter posts `RowChosen`)."""

    COMPONENT_CLASSES = {"lines-table--header", "lines-table--warning", "lines-table--error", "lines-table--cursor"}
    DEFAULT_CSS = """
    LinesTable { width: 100%; }
    LinesTable > .lines-table--header { text-style: bold; color: $text-accent; }
    LinesTable > .lines-table--warning { color: $text-warning; }
    LinesTable > .lines-table--error { color: $text-error; }
    LinesTable > .lines-table--cursor { background: $block-cursor-blurred-background; }
    LinesTable:focus > .lines-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    """
    BINDINGS = bindings(TABLE_KEYS)

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
        self.widths = [column.width for column in self.columns]
        self.rows = []
        self._lines: list[tuple[str, str | None]] = []

    @property
    def line_width(self) -> int:
        return sum(width + 1 for width in self.widths) + 1

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

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without a cursor there is nothing to move or choose: the footer must not offer it.
        return self.cursor_row is not None or action not in ("move", "choose")

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
        self._lay_out()

    def on_resize(self) -> None:
        self._lay_out()

    def _lay_out(self) -> None:
        base = sum(column.width + 1 for column in self.columns) + 1
        self.widths = fitted_widths(self.columns, self.rows, self.size.width - base)
        self._lines = [(printable(row.cells[0]).ljust(self.line_width) if row.spans
                        else format_line(self.widths, self.columns, row.cells), row.tone) for row in self.rows]
        self.virtual_size = Size(self.line_width, len(self.rows) + 1)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:  # the header stays put while the rows scroll
            text, style = format_line(self.widths, self.columns, (c.title for c in self.columns)), self._style("header")
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
