"""`p`: the pending queue, the grants in force (revoke with `r`, confirmed) and the decision history: who
decided what, when and why. Grants and history come from our orchestrator; an external one has neither,
and the screen says so."""

from __future__ import annotations

import json
import time

from textual import work
from textual.app import ComposeResult
from textual.content import Content
from textual.widgets import Static

from console.formatting import day_time, describe_age
from console.keymap import PERMISSIONS_KEYS, bindings
from console.messages import PendingChanged, PermissionsChanged, ReviewRequest
from console.modals.confirm import ConfirmModal
from console.modals.text_view import TextView
from console.screens.base import ConsoleScreen
from console.state import ConsoleState
from console.widgets.keys_footer import KeysFooter
from console.widgets.lines_table import Column, LinesTable, Row
from console.widgets.status_header import StatusHeader
from gateway_core.errors import GatewayError
from gateway_core.orchestrator.client import OrchestratorUnavailable, RouteMissing, UnknownGrant
from gateway_core.orchestrator.models import DecidedRequest, GrantView

RELOAD_AFTER_SECONDS = 10.0  # grants also expire by themselves: reload now and then even with no event
# Pending and grants fit 80 columns, and give names the room a wider terminal has.
PENDING_COLUMNS = (Column("agent", 14, grows=True), Column("service", 10), Column("operation", 18, grows=True),
                   Column("risk", 11), Column("asked", 9), Column("expires", 9))
GRANT_COLUMNS = (Column("agent", 14, grows=True), Column("service", 10), Column("operation", 18, grows=True),
                 Column("expires", 13), Column("granted by", 16, grows=True))
HISTORY_COLUMNS = (Column("decided (UTC)", 19, whole=True), Column("agent", 16, grows=True), Column("service", 10),
                   Column("operation", 22), Column("status", 8), Column("scope", 9), Column("for", 10),
                   Column("by", 18), Column("reason", 30))


def granted_for(entry: DecidedRequest) -> str:
    """How long an approval grants: one call, a while, or until revoked."""
    if entry.status != "approved":
        return "-"
    if entry.scope == "once":
        return "one call"
    if entry.revoked_at is not None:
        return "revoked"
    if entry.expires_at is not None and entry.timestamp is not None:
        return describe_age(entry.expires_at.timestamp() - entry.timestamp.timestamp())
    return "no limit"


class PermissionsScreen(ConsoleScreen):
    BINDINGS = bindings(PERMISSIONS_KEYS)
    AUTO_FOCUS = "#pending"

    def __init__(self, state: ConsoleState) -> None:
        super().__init__(state)
        self.grants: list[GrantView] = []
        self.history: list[DecidedRequest] = []
        self.loaded_with: int | None = None  # the state's permission_changes when grants and history were loaded
        self.loaded_at = 0.0

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        yield Static("Pending requests (enter decides)", classes="section-title")
        yield LinesTable(PENDING_COLUMNS, cursor=True, id="pending")
        yield Static("Grants in force (r revokes)", classes="section-title")
        yield LinesTable(GRANT_COLUMNS, cursor=True, id="grants")
        yield Static("Decisions, newest first", classes="section-title")
        yield LinesTable(HISTORY_COLUMNS, id="history")
        yield Static("", id="permissions-note", markup=False)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        """The ages ("asked", "expires", a grant's "in 8 h") count on while the screen is shown, not only when
        a permission event comes."""
        if self.is_current:
            self.show_pending()
            self._show_grants()

    def on_screen_resume(self) -> None:
        self.show_pending()
        if (self.loaded_with != self.state.permission_changes
                or time.monotonic() - self.loaded_at > RELOAD_AFTER_SECONDS):
            self.reload()

    def on_pending_changed(self, message: PendingChanged) -> None:
        self.show_pending()

    def on_permissions_changed(self, message: PermissionsChanged) -> None:
        self.reload()

    def show_pending(self) -> None:
        pending = self.query_one_optional("#pending", LinesTable)
        if pending is None:
            return
        now = self.state.clock()
        rows = []
        for key, request in self.state.pending.items():
            asked = describe_age(now - request.timestamp.timestamp()) if request.timestamp else "-"
            expires = describe_age(request.expires_at.timestamp() - now) if request.expires_at else "-"
            rows.append(Row(key, (request.agent_name or self.state.agent_name(request.agent_id),
                                                 request.service_name,
                                                 request.operation or "*", request.risk or "-", asked, expires),
                            "error" if request.risk == "destructive" else None))
        pending.show(rows)

    def action_reload(self) -> None:
        self.reload()

    @work(exit_on_error=False, group="permissions-load", exclusive=True)
    async def reload(self) -> None:
        gateway = self.state.gateway
        if gateway is None:
            return
        self.loaded_with, self.loaded_at = self.state.permission_changes, time.monotonic()
        note = ""
        try:
            self.state.agent_names = await gateway.agent_names()
            self.grants = await gateway.grants()
            self.history = await gateway.history(200)
        except RouteMissing:
            note = ("This orchestrator lists neither grants nor decisions, nor requests made before the console "
                    "linked to it (only ours does): what is shown here is what the console saw.")
        except (OrchestratorUnavailable, GatewayError) as exc:
            note = f"Could not load grants and history: {exc}"
        self.query_one("#permissions-note", Static).update(note)
        self._show_grants()
        self._show_history()

    def _show_grants(self) -> None:
        now = self.state.clock()
        self.query_one("#grants", LinesTable).show([
            Row(grant.id or "", (self.state.agent_name(grant.agent_id), grant.service,
                                 ", ".join(grant.operations),
                                 f"in {describe_age(grant.expires_at.timestamp() - now)}" if grant.expires_at
                                 else "never", grant.granted_by or "-"))
            for grant in self.grants if not grant.args_hash])  # one-time approvals are spent by their call

    def _show_history(self) -> None:
        self.query_one("#history", LinesTable).show([
            Row(entry.request_id, (day_time(entry.timestamp.timestamp()) if entry.timestamp else "-",
                                   self.state.agent_name(entry.agent_id), entry.service_name,
                                   entry.operation or "*", entry.status, entry.scope or "-", granted_for(entry),
                                   entry.decided_by or "-", entry.reason or ""),
                None if entry.status == "approved" else "warning")
            for entry in self.history])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Revoke means revoke only on the grants: elsewhere r is the app's (review the pending requests).
        return action != "revoke" or (self.focused is not None and self.focused.id == "grants")

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def on_lines_table_row_chosen(self, event: LinesTable.RowChosen) -> None:
        if event.table.id == "pending":
            self.post_message(ReviewRequest(event.row.key))
        elif event.table.id == "grants":  # the footer offers enter on every table: the grant, whole
            grant = next((grant for grant in self.grants if grant.id == event.row.key), None)
            if grant is not None:
                whole = {"agent": self.state.agent_name(grant.agent_id), **grant.model_dump(mode="json")}
                self.app.push_screen(TextView(f"Grant {grant.id}", json.dumps(whole, indent=2)))

    @work(exit_on_error=False, group="permissions-revoke")
    async def action_revoke(self) -> None:
        chosen = self.query_one("#grants", LinesTable).chosen
        gateway = self.state.gateway
        if chosen is None or gateway is None:
            self.notify("No grant to revoke", severity="warning")
            return
        grant = next((g for g in self.grants if g.id == chosen.key), None)
        if grant is None or grant.id is None:
            return
        if self.state.read_only:
            self.notify("Read-only console: grants cannot be revoked here", severity="warning")
            return
        question = (f"Revoke {self.state.agent_name(grant.agent_id)}'s grant on {grant.service} "
                    f"({', '.join(grant.operations)})? "
                    "Its calls needing it are refused from now on.")
        if not await self.app.push_screen_wait(ConfirmModal(Content(question))):
            return
        try:
            await gateway.revoke(grant.id)
        except UnknownGrant as exc:  # revoked elsewhere or expired meanwhile: what the operator wanted holds
            self.notify(f"Nothing to revoke: {exc}", severity="warning")
            self.reload()
            return
        except (OrchestratorUnavailable, RouteMissing, GatewayError) as exc:
            self.notify(f"The grant was not revoked: {exc}", severity="error")
            return
        self.notify(f"Grant on {grant.service} revoked")
        self.reload()
