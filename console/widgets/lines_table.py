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
    whole: bool = False  # never narrowed when the table is too wide for the screen (a time: cut, it misleads)


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
    """Each column's width: its own, and for growing columns more from `room` (spare width), as needed. A
    negative `room` (the columns do not fit) is taken first from widths no cell needs, then from the widest
    columns, none narrower than its title (a `whole` one not at all): every column stays on screen, a cell too
    long cut with "…"."""
    widths = [column.width for column in columns]
    longest = [max((len(row.cells[index]) for row in rows if not row.spans), default=0)
               for index in range(len(columns))]
    for index in reversed(range(len(columns))):  # right to left: an operation's name before an agent's
        column = columns[index]
        if column.grows and room > 0:
            extra = min(room, max(0, longest[index] - column.width))
            widths[index] += extra
            room -= extra
    least = [column.width if column.whole else len(column.title) for column in columns]
    for floors in ([max(floor, cell) for floor, cell in zip(least, longest, strict=True)], least):
        while room < 0:
            narrowable = [index for index, floor in enumerate(floors) if widths[index] > floor]
            if not narrowable:
                break
            widest = max(reversed(narrowable), key=lambda index: widths[index])  # of equals, the rightmost
            widths[widest] -= 1
            room += 1
    return widths


class LinesTable(ScrollView, can_focus=True):
    """With `cursor=True` a row is selected (up/down, enter posts `RowChosen`)."""

    COMPONENT_CLASSES = {"lines-table--header", "lines-table--warning", "lines-table--error", "lines-table--cursor"}
    DEFAULT_CSS = """
    LinesTable { width: 100%; overflow-x: hidden; }
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
        return self.rows[self.cursor_row]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without a cursor there is nothing to move or choose: the footer must not offer it.
        return self.cursor_row is not None or action not in ("move", "choose")

    @property
    def visible_rows(self) -> int:
        """How many rows are on screen at once, below the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def action_move(self, by: int) -> None:
        if self.cursor_row is None or not self.rows:
            return
        self.cursor_row = max(0, min(len(self.rows) - 1, self.cursor_row + by))
        self._scroll_to_cursor()
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        """Scrolls so that the cursor's row is on screen (and, the rows fewer now, none is left above blank lines)."""
        top, visible = self.scroll_offset.y, self.visible_rows
        if self.cursor_row is not None:
            top = max(min(top, self.cursor_row), self.cursor_row - visible + 1)
        top = max(0, min(top, len(self.rows) - visible))
        if top != self.scroll_offset.y:
            self.scroll_to(y=top, animate=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolled by other means (the mouse): the cursor comes along, so enter or r acts on a row on screen.
        if self.cursor_row is not None and self.rows:
            top = round(new_value)
            self.cursor_row = max(top, min(self.cursor_row, top + self.visible_rows - 1, len(self.rows) - 1))

    def action_choose(self) -> None:
        if (row := self.chosen) is not None:
            self.post_message(self.RowChosen(self, row))

    def show(self, rows: list[Row]) -> None:
        """Replaces the rows; repaints only when something on them changed."""
        if rows == self.rows:
            return
        chosen = self.chosen
        self.rows = rows
        if self.cursor_row is not None:
            # The cursor stays on its row, wherever the new rows put it (a grant added above it): enter and r
            # act on what the operator chose. A row gone leaves it at the same place.
            moved = next((index for index, row in enumerate(rows) if chosen is not None and row.key == chosen.key),
                         None)
            self.cursor_row = moved if moved is not None else max(0, min(self.cursor_row, len(rows) - 1))
        self._lay_out()

    def on_resize(self) -> None:
        self._lay_out()

    def _lay_out(self) -> None:
        # The vertical scrollbar, shown when the rows overflow, takes its width from the columns': `size`
        # includes it (columns fitted to `size` were cut at the right and scrolled sideways).
        overflows = len(self.rows) + 1 > self.size.height
        room = self.size.width - (self.styles.scrollbar_size_vertical if overflows else 0)
        base = sum(column.width + 1 for column in self.columns) + 1
        self.widths = fitted_widths(self.columns, self.rows, room - base)
        self._lines = [(printable(row.cells[0]).ljust(self.line_width) if row.spans
                        else format_line(self.widths, self.columns, row.cells), row.tone) for row in self.rows]
        self.virtual_size = Size(self.line_width, len(self.rows) + 1)
        self._scroll_to_cursor()
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
            if index == self.cursor_row:
                style += self.get_component_rich_style("lines-table--cursor")
        strip = Strip([Segment(text.ljust(self.line_width), style)]).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, self.rich_style)

    def _style(self, name: str) -> Style:
        return self.rich_style + self.get_component_rich_style(f"lines-table--{name}")
