"""The home screen: the ten services with health, latency history and cost; a live table of calls, newest
first and filterable; and what each agent (and operator) spent today."""

from __future__ import annotations

from collections.abc import Sequence

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static

from console.formatting import STATUS_LABEL, clock_time, describe_age, money, sparkline
from console.keymap import DASHBOARD_KEYS, bindings
from console.messages import CallsArrived, ShowCalls, StatusChanged
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.filter_field import FilterField
from console.widgets.keys_footer import KeysFooter
from console.widgets.lines_table import Column, LinesTable, Row
from console.widgets.status_header import StatusHeader
from gateway_core.store import CallRecord

# Widths that fit 80 columns (wider content is cut with an ellipsis; the ledger keeps it whole).
SERVICE_COLUMNS = (Column("service", 10), Column("status", 16), Column("latency", 14), Column("checked", 7),
                   Column("calls", 6, True), Column("errors", 6, True), Column("cost", 8, True))
CALL_COLUMNS = (Column("time", 8), Column("agent", 8, grows=True), Column("via", 3), Column("service", 10),
                Column("operation", 17, grows=True), Column("status", 7), Column("took", 5, True),
                Column("tok", 4, True), Column("cost", 6, True))
AGENT_COLUMNS = (Column("agent", 16, grows=True), Column("calls", 6, True), Column("cost", 8, True))
# Cost by agent shows beside the calls only from here: narrower, the calls table would cut agents' names
# ("sandbox-deployer-2" read "sandbox…" at 120 columns); `$` still shows it there.
WIDE_COLUMNS = 140
SERVICE_TONE = {"down": "error", "degraded": "warning"}


SHOWN_STATUS = {"success": "ok", "timed_out": "timeout"}  # seven characters at most
# Which way a call came in, in three characters: `rpc` (JSON-RPC), `mcp`, `/` (the slash form, as its commands are
# written) or `op` (an operator's console, as the agent column names operators).
SHOWN_VIA = {"slash": "/", "console": "op"}


def settings_to_set(missing: Sequence[str]) -> str:
    """What to set, in a line: of settings that are alternatives ("A or B or C") the first is named."""
    named = []
    for setting in missing:
        first, *others = setting.split(" or ")
        named.append(f"{first} (or one of {len(others)} others)" if others else first)
    return ", ".join(named)


def call_status(record: CallRecord) -> str:
    """`ok`; what became of a call that needed permission (denied, pending, ...); else the error code."""
    if record.status == "error":
        return str(record.error_code or "error")
    return SHOWN_STATUS.get(record.status, record.status)


def took(duration_ms: float) -> str:
    """Milliseconds up to 10 s (`842`), seconds from there (`10.2s`): five characters either way."""
    return f"{duration_ms:.0f}" if duration_ms < 10_000 else f"{duration_ms / 1000:.1f}s"


def call_row(record: CallRecord, state: ConsoleState) -> Row:
    # Narrow columns: an operator reads "op:"; the ledger keeps the full name.
    agent = state.agent_name(record.agent_id).replace("operator:", "op:", 1)
    cells = (clock_time(record.ts), agent, SHOWN_VIA.get(record.via, record.via), record.service or "-",
             record.operation or record.method or "-", call_status(record), took(record.duration_ms),
             str(record.tokens), f"{record.cost_usd:.4f}")
    tone = "error" if record.status == "error" else None if record.status == "success" else "warning"
    return Row(record.id, cells, tone)


def row_matches(row: Row, needle: str) -> bool:
    """The filter matches what the row shows (agent names, `ok`), not values kept out of sight."""
    return not needle or needle.lower() in " ".join(row.cells).lower()


class DashboardScreen(ConsoleScreen):
    BINDINGS = bindings(DASHBOARD_KEYS)
    AUTO_FOCUS = "#calls"

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.call_filter = ""

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield LinesTable(SERVICE_COLUMNS, id="services")
        with Horizontal(id="lower"):
            with Vertical(id="calls-pane"):
                yield Static("Calls, newest first", id="calls-title", classes="section-title", markup=False)
                yield FilterField("filter calls: agent, via, service, operation, status (esc clears)", "calls",
                                  id="calls-filter")
                yield LinesTable(CALL_COLUMNS, id="calls")
            with Vertical(id="agents-pane"):
                yield Static("Cost by agent, today", classes="section-title")
                yield LinesTable(AGENT_COLUMNS, id="agents")
        yield KeysFooter()

    def on_resize(self, event: events.Resize) -> None:
        # Cost by agent shows beside the calls on wide terminals (WIDE_COLUMNS). (Textual's breakpoints would recompute
        # on every screen switch; a resize is rarer.)
        self.set_class(event.size.width >= WIDE_COLUMNS, "-wide")

    def on_screen_resume(self) -> None:
        self.refresh_tables()
        self.show_calls()

    def on_status_changed(self, message: StatusChanged) -> None:
        self.refresh_tables()

    def on_calls_arrived(self, message: CallsArrived) -> None:
        self.show_calls()

    def refresh_tables(self) -> None:
        """Services and cost by agent, from the gateway's counters (once a second)."""
        gateway = self.state.gateway
        services_table = self.query_one_optional("#services", LinesTable)
        agents_table = self.query_one_optional("#agents", LinesTable)
        if gateway is None or services_table is None or agents_table is None:  # not started, composed, or torn down
            return
        now = self.state.clock()
        services = []
        listed = gateway.services()
        for service in (service for service in listed if service.configured):
            report = service.health
            latency = (f"{report.latency_ms:>4.0f} ms {sparkline(service.latency_history, 6)}"
                       if report is not None and report.latency_ms is not None else "-")
            services.append(Row(service.name, (service.name, STATUS_LABEL.get(service.status, "?"), latency,
                                               describe_age(now - report.checked_at) if report is not None else "-",
                                               str(service.used.calls), str(service.used.errors),
                                               money(service.used.cost_usd)), SERVICE_TONE.get(service.status)))
        unconfigured = [service for service in listed if not service.configured]
        services += [Row(service.name, (f" ○ {service.name}: not in the sandbox: for a real one set "
                                        f"{settings_to_set(service.missing_settings)}",), spans=True)
                     for service in unconfigured if service.name in self.state.not_in_sandbox]
        others = [service.name for service in unconfigured if service.name not in self.state.not_in_sandbox]
        if others:  # one line for them all: the calls table below gets the rows
            services.append(Row("not-configured", (f" ○ not configured: {', '.join(others)}",), spans=True))
        services_table.styles.height = len(services) + 1
        services_table.show(services)
        usage = sorted(gateway.today().by_caller.items(), key=lambda item: -item[1].cost_usd)
        agents_table.show([Row(caller, (self.state.agent_name(caller), str(totals.calls), money(totals.cost_usd)))
                           for caller, totals in usage])

    # -- calls ------------------------------------------------------------------------------------------

    def show_calls(self) -> None:
        """Redraws the calls from the app's recent ones (newest first), filtered."""
        calls = self.query_one_optional("#calls", LinesTable)
        if calls is None:  # not composed yet, or torn down as the app exits
            return
        rows = (call_row(record, self.state) for record in self.state.calls)
        calls.show([row for row in rows if row_matches(row, self.call_filter)])
        title = "Calls, newest first" + (f"  (filter: {self.call_filter})" if self.call_filter else "")
        self.query_one("#calls-title", Static).update(title, layout=False)

    def action_filter(self) -> None:
        self.query_one(FilterField).open()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.call_filter = event.value.strip()
        self.show_calls()

    def on_show_calls(self, message: ShowCalls) -> None:
        field = self.query_one(FilterField)
        field.display = bool(message.text)
        field.value = message.text  # Input.Changed redraws the calls

    def action_toggle_agent_costs(self) -> None:
        pane = self.query_one("#agents-pane")
        visible = pane.display  # by default: shown on wide terminals only
        pane.set_class(not visible, "shown")
        pane.set_class(visible, "hidden")
