"""`u`: the audit log, newest first, from the store (append-only there): who did what, to what, when.
`/` filters by actor, action, subject or detail."""

from __future__ import annotations

import json

from textual import work
from textual.app import ComposeResult
from textual.widgets import Input, Static

from console.formatting import day_time
from console.keymap import AUDIT_KEYS, bindings
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.filter_field import FilterField
from console.widgets.keys_footer import KeysFooter
from console.widgets.lines_table import Column, LinesTable, Row
from console.widgets.status_header import StatusHeader
from gateway_core.store import AuditEvent

AUDIT_SHOWN = 500
AUDIT_COLUMNS = (Column("time (UTC)", 19), Column("actor", 24), Column("action", 24), Column("subject", 42),
                 Column("detail", 80))


def audit_text(event: AuditEvent) -> str:
    return " ".join((event.actor, event.action, event.subject or "", json.dumps(event.detail, sort_keys=True)))


class AuditScreen(ConsoleScreen):
    BINDINGS = bindings(AUDIT_KEYS)
    AUTO_FOCUS = "#audit"

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.events: list[AuditEvent] = []
        self.needle = ""

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield Static(f"Audit log, newest first (the last {AUDIT_SHOWN})", id="audit-title", classes="section-title")
        yield FilterField("filter: actor, action, subject or detail (esc clears)", "audit", id="audit-filter")
        yield LinesTable(AUDIT_COLUMNS, cursor=True, id="audit")
        yield KeysFooter()

    def on_screen_resume(self) -> None:
        self.reload()

    def action_reload(self) -> None:
        self.reload()

    @work(exit_on_error=False, group="audit-load", exclusive=True)
    async def reload(self) -> None:
        gateway = self.state.gateway
        if gateway is None:
            return
        self.events = await gateway.audit(AUDIT_SHOWN)
        self._show()

    def _show(self) -> None:
        needle = self.needle.lower()
        self.query_one("#audit", LinesTable).show([
            Row(str(number), (day_time(event.ts), event.actor, event.action, event.subject or "",
                              json.dumps(event.detail, sort_keys=True)))
            for number, event in enumerate(self.events) if not needle or needle in audit_text(event).lower()])

    def action_filter(self) -> None:
        self.query_one(FilterField).open()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._show()
