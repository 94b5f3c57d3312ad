"""`u`: the audit log, newest first, from the store (append-only there): who did what, to what, when.
`/` filters by actor, action, subject or detail."""

from __future__ import annotations

import json

from textual import work
from textual.app import ComposeResult
from textual.widgets import Input, Static

from console.formatting import day_time
from console.keymap import AUDIT_KEYS, bindings
from console.modals.text_view import TextView
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.filter_field import FilterField
from console.widgets.keys_footer import KeysFooter
from console.widgets.lines_table import Column, LinesTable, Row
from console.widgets.status_header import StatusHeader
from gateway_core.errors import GatewayError
from gateway_core.store import AuditEvent

AUDIT_SHOWN = 500
AUDIT_COLUMNS = (Column("time (UTC)", 19, whole=True), Column("actor", 24), Column("action", 24), Column("subject", 42),
                 Column("detail", 80))


DECISIONS = ("permission.approved", "permission.denied")


def one_entry_per_decision(events: list[AuditEvent]) -> list[AuditEvent]:
    """A decision is one entry: the grant it added (same time, same actor) and the gateway's note that it saw
    the decision fold into it."""
    decisions = {(event.ts, event.actor) for event in events if event.action == "permission.approved"}
    decided = {event.subject for event in events if event.action in DECISIONS}
    return [event for event in events
            if not (event.action == "grant.added" and (event.ts, event.actor) in decisions)
            and not (event.action == "permission.decision_seen" and event.subject in decided)]


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
        try:
            self.events = one_entry_per_decision(await gateway.audit(AUDIT_SHOWN))
            self.state.agent_names = await gateway.agent_names()  # the entries name agents the console may not know
        except GatewayError as exc:  # a gateway elsewhere that cannot be reached: say so, keep what is shown
            self.notify(f"Could not load the audit log: {exc.message}", severity="error")
            return
        self._show()

    def _named(self, text: str | None) -> str:
        """An actor or subject as the operator reads it: agents by name (`agent:deployer`)."""
        if not text:
            return ""
        kind, _, agent_id = text.partition(":")
        if kind == "agent" and agent_id in self.state.agent_names:
            return f"agent:{self.state.agent_names[agent_id]}"
        return self.state.agent_names.get(text, text)

    def _row(self, number: int, event: AuditEvent) -> Row:
        detail = {key: self.state.agent_name(value) if key == "agent_id" and isinstance(value, str) else value
                  for key, value in event.detail.items()}
        return Row(str(number), (day_time(event.ts), self._named(event.actor), event.action,
                                 self._named(event.subject), json.dumps(detail, sort_keys=True)))

    def _show(self) -> None:
        needle = self.needle.lower()
        rows = (self._row(number, event) for number, event in enumerate(self.events))
        self.query_one("#audit", LinesTable).show([row for row in rows
                                                   if not needle or needle in " ".join(row.cells).lower()])

    def on_lines_table_row_chosen(self, event: LinesTable.RowChosen) -> None:
        chosen = self.events[int(event.row.key)]
        entry = {"time (UTC)": day_time(chosen.ts), "actor": chosen.actor, "action": chosen.action,
                 "subject": chosen.subject, "detail": chosen.detail}
        self.app.push_screen(TextView(f"Audit entry: {chosen.action}", json.dumps(entry, indent=2, sort_keys=True)))

    def action_filter(self) -> None:
        self.query_one(FilterField).open()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip()
        self._show()
