"""What the operator sees is what the keys act on: a table's cursor stays on a row on screen and its last
column shows whole; the Operations screen runs a form only against its own service, names the call it
confirms, and shows the field it focuses. Driven with keys, as test_console.py drives the console."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, Input, Label, OptionList

from console.app import ConsoleApp
from console.modals.permission_request import PermissionRequestModal
from console.widgets.lines_table import LinesTable
from gateway_core.auth import create_agent
from gateway_core.events import CallFinished
from gateway_core.orchestrator.models import PermissionRequestEvent
from gateway_core.store import CallRecord
from sandbox import Sandbox
from tests.test_console import agent_call, agent_token, console, modal_open, operations_of, until

SIZES = [(80, 24), (120, 40)]


def sized(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def screen_lines(app: ConsoleApp) -> list[str]:
    """The screen as the terminal shows it, a string per line."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def highlighted_line(app: ConsoleApp, table: LinesTable) -> str | None:
    """The line of `table` drawn in the cursor's colours, as on screen; None when no such line is on screen."""
    cursor = table.get_component_rich_style("lines-table--cursor").bgcolor
    region = table.region
    for y, strip in enumerate(app.screen._compositor.render_strips()):
        if region.y < y < region.bottom and any(
                segment.style is not None and segment.style.bgcolor == cursor
                for segment in strip.crop(region.x, region.right)):
            return strip.text[region.x:region.right]
    return None


def table_lines(app: ConsoleApp, table: LinesTable) -> list[str]:
    """The lines of `table` on screen, header first, without the vertical scrollbar."""
    region = table.scrollable_content_region
    return [line[region.x:region.right] for line in screen_lines(app)[region.y:region.bottom]]


async def choose_with_enter(pilot: Pilot[None], screen: Any, operation: str) -> None:
    """Highlights `operation` in the list and presses enter, as an operator chooses one."""
    options = screen.query_one("#operations", OptionList)
    options.focus()
    options.highlighted = next(index for index in range(options.option_count)
                               if options.get_option_at_index(index).id == operation)
    await pilot.press("enter")
    await until(pilot, lambda: screen.selected is not None and screen.selected.name == operation
                and screen.query_one_optional("#form") is not None)


# -- tables --------------------------------------------------------------------------------------------------


async def test_the_grants_cursor_stays_on_a_row_on_screen_and_r_revokes_that_one(tmp_path: Path) -> None:
    async with console(tmp_path, size=(80, 24)) as (app, pilot):
        assert app.runtime is not None
        gateway = app.runtime.gateway
        for number in range(9):  # names longer than the agent column: it takes the spare width (and cuts them)
            await create_agent(gateway.store, gateway.hasher, f"deployer-{number}-of-the-sandbox", "test",
                               f"agent-{number}")
            await gateway.store.add_grant(f"agent-{number}", "coolify", "list-applications", None, "operator:alice")
        await pilot.press("p")
        screen = app.permissions_screen
        grants = screen.query_one("#grants", LinesTable)
        await until(pilot, lambda: app.screen is screen and grants.row_count == 9)
        await pilot.press("tab")
        assert screen.focused is grants
        await pilot.press(*["down"] * 5)
        await pilot.pause(0.1)
        line = highlighted_line(app, grants)
        assert line is not None, "no grant is highlighted on screen"
        assert grants.chosen is not None and grants.chosen.cells[0].removesuffix("-of-the-sandbox") in line
        await pilot.press("r")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        question = str(app.screen.query_one("#confirm-question").render())
    assert re.search(r"Revoke (deployer-\d)-of-the-sandbox's", question)[1] in line  # type: ignore[index]


async def test_the_cursor_stays_on_its_grant_when_the_one_above_it_goes(tmp_path: Path) -> None:
    """The cursor was kept by row number: when a grant above it went (revoked elsewhere, expired), it moved onto
    the next grant, which r would revoke."""
    async with console(tmp_path) as (app, pilot):
        assert app.runtime is not None
        store = app.runtime.gateway.store
        made = []
        for number in range(3):
            await create_agent(store, app.runtime.gateway.hasher, f"agent-{number}", "test", f"agent-{number}")
            made.append(await store.add_grant(f"agent-{number}", "coolify", None, None, "operator:alice"))
        await pilot.press("p")
        screen = app.permissions_screen
        grants = screen.query_one("#grants", LinesTable)
        await until(pilot, lambda: app.screen is screen and grants.row_count == 3)
        grants.focus()
        chosen = grants.rows[1].key
        grants.cursor_row = 1
        above = grants.rows[0].key
        await store.revoke_grant(above, "test")
        await pilot.press("f5")
        await until(pilot, lambda: grants.row_count == 2)
    assert grants.chosen is not None and grants.chosen.key == chosen, (chosen, [row.key for row in grants.rows])


async def test_enter_on_the_pending_table_opens_the_request_highlighted_on_screen(tmp_path: Path) -> None:
    async with console(tmp_path, size=(80, 24)) as (app, pilot):
        for number in range(9):
            app.state.add_request(PermissionRequestEvent(
                request_id=f"perm_req_{number}", agent_id=f"agent-{number}", agent_name=f"agent-{number}",
                service_name="coolify", operation="restart-application", risk="write"))
        await pilot.press("p")
        screen = app.permissions_screen
        pending = screen.query_one("#pending", LinesTable)
        await until(pilot, lambda: app.screen is screen and pending.row_count == 9)
        assert screen.focused is pending
        await pilot.press(*["down"] * 5)
        await pilot.pause(0.1)
        line = highlighted_line(app, pending)
        assert line is not None, "no request is highlighted on screen"
        await pilot.press("enter")
        await until(pilot, lambda: modal_open(app))
        assert isinstance(app.screen, PermissionRequestModal)
        assert f"{app.screen.request.agent_name} " in line


@pytest.mark.parametrize("size", SIZES, ids=sized)
async def test_the_calls_table_shows_its_last_column_whole(tmp_path: Path, size: tuple[int, int]) -> None:
    async with console(tmp_path, size=size) as (app, pilot):
        assert app.runtime is not None
        gateway = app.runtime.gateway
        now = app.state.clock()
        for number in range(60):  # more than the table shows: its vertical scrollbar is up
            # An MCP tool's name longer than the operation column: it takes all the spare width.
            record = CallRecord(f"01900000-0000-7000-8000-{number:012d}", now - number, "agent-monitor",
                                "tools/call", "echo", "echo-everything-you-are-sent-back-to-you-word-for-word",
                                "success", None, 41.2, 200, 0.0006, f"rpc-{number}", via="mcp")
            gateway.usage.add(record)
            gateway.events.publish(CallFinished(record))
        calls = app.dashboard.query_one("#calls", LinesTable)
        await until(pilot, lambda: calls.row_count == 60)
        await pilot.pause(0.2)
        header, *rows = table_lines(app, calls)
        assert calls.show_vertical_scrollbar and not calls.show_horizontal_scrollbar
    assert header.rstrip().endswith(" cost"), header
    assert rows and all(row.rstrip().endswith(" 0.0006") for row in rows), rows


@pytest.mark.parametrize("size", SIZES, ids=sized)
async def test_the_decisions_table_shows_every_column_and_marks_a_cut_value(tmp_path: Path,
                                                                           size: tuple[int, int]) -> None:
    async with console(tmp_path, size=size) as (app, pilot):
        token = await agent_token(app)
        await agent_call(app, token)
        await until(pilot, lambda: modal_open(app))
        await pilot.press("d", *"too risky at night", "enter", "p")
        screen = app.permissions_screen
        history = screen.query_one("#history", LinesTable)
        await until(pilot, lambda: app.screen is screen and history.row_count == 1)
        await pilot.pause(0.2)
        header, decision = table_lines(app, history)[:2]
        assert not history.show_horizontal_scrollbar
    assert header.split() == ["decided", "(UTC)", *(column.title for column in history.columns[1:])], header
    # The last value, the reason, shows whole or cut with an ellipsis: never cut without saying so.
    reason, shown = "too risky at night", decision.rstrip()
    assert any(shown.endswith(f" {reason[:length]}…") for length in range(1, len(reason))) \
        or shown.endswith(f" {reason}"), decision


# -- the Operations screen ------------------------------------------------------------------------------------


async def remember_filled_in(app: ConsoleApp, pilot: Pilot[None]) -> Any:
    """The Operations screen with mem0's remember chosen and its form filled in."""
    screen = await operations_of(app, pilot, "mem0")
    await choose_with_enter(pilot, screen, "remember")
    screen.query_one("#field-content", Input).value = "the deploy key rotates on Mondays"
    screen.query_one("#field-user_id", Input).value = "alice"
    return screen


async def test_another_service_clears_the_form_so_it_never_runs_there(tmp_path: Path) -> None:
    async with console(tmp_path, sandbox=Sandbox(agents=0)) as (app, pilot):
        screen = await remember_filled_in(app, pilot)
        await pilot.press("ctrl+o", "right_square_bracket")
        await until(pilot, lambda: screen.service is not None and screen.service.name != "mem0")
        await pilot.pause(0.1)
        assert screen.selected is None and screen.query_one_optional("#form") is None
        assert screen.query_one("#run", Button).disabled
        assert "remember" not in str(screen.query_one("#operation-title").render())
        await pilot.press("ctrl+r", "y")
        await pilot.pause(0.3)
        assert type(app.screen).__name__ != "ConfirmModal"
    assert not any(call.operation == "remember" for call in app.state.calls)


async def test_the_first_enter_on_the_operations_opens_one_and_the_list_shows_the_forms(tmp_path: Path) -> None:
    """After `c` nothing was highlighted: the first enter did nothing. And a form opened from the palette left the
    list's highlight elsewhere."""
    async with console(tmp_path, sandbox=Sandbox(agents=0)) as (app, pilot):
        screen = await operations_of(app, pilot, "coolify")
        options = screen.query_one("#operations", OptionList)
        options.focus()
        await pilot.press("enter")
        await until(pilot, lambda: screen.selected is not None)
        first = screen.selected.name
        await screen.choose("restart-application")
        highlighted = options.highlighted_option
    assert first == options.get_option_at_index(1).id  # the first operation (the group's title is not one)
    assert highlighted is not None and highlighted.id == "restart-application"


async def test_a_write_without_a_target_is_confirmed_by_service_and_operation(tmp_path: Path) -> None:
    async with console(tmp_path, sandbox=Sandbox(agents=0)) as (app, pilot):
        await remember_filled_in(app, pilot)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: type(app.screen).__name__ == "ConfirmModal")
        question = str(app.screen.query_one("#confirm-question").render())
        await pilot.press("y")
        await until(pilot, lambda: any(call.operation == "remember" for call in app.state.calls))
    assert question == "Run mem0 remember?"
    assert next(call for call in app.state.calls if call.operation == "remember").service == "mem0"


def in_view(widget: Widget, area: Widget) -> bool:
    """Whether all of `widget`'s lines are within `area`'s visible lines."""
    shown = area.scrollable_content_region
    return shown.y <= widget.region.y and widget.region.bottom <= shown.bottom


async def test_the_focused_first_field_is_scrolled_into_view_at_80x24(tmp_path: Path) -> None:
    async with console(tmp_path, sandbox=Sandbox(agents=0), size=(80, 24)) as (app, pilot):
        screen = await operations_of(app, pilot, "github")
        area = screen.query_one("#form-area")
        # The scroll a longer form was left at used to stay, or not, as the frames fell: so, several times.
        for _ in range(6):
            await choose_with_enter(pilot, screen, "create-pr")  # a long form, scrolled down by tabbing through
            await pilot.press("tab", "tab", "tab", "tab")
            await until(pilot, lambda: area.scroll_offset.y > 0)
            await pilot.press("ctrl+o")
            await choose_with_enter(pilot, screen, "list-workflows")
            await pilot.pause(0.2)
            field = app.focused
            assert isinstance(field, Input) and field.id == "field-owner"
            label = screen.query_one("#form").query(Label).first()
            assert in_view(field, area), (field.region, area.scrollable_content_region)
            assert in_view(label, area), (label.region, area.scrollable_content_region)
