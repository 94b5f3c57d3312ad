"""ConsoleApp: the gateway and its orchestrator inside the app's event loop, with live health, calls and
cost, and permission requests decided from the keyboard."""

from __future__ import annotations

import getpass
from collections import deque
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, Static

from console.modals.permission_request import Decision, PermissionRequestModal
from gateway_core.config import Settings
from gateway_core.events import CallFinished, HealthChanged, LinkChanged, PermissionEvent
from gateway_core.gateway import iso_utc
from gateway_core.orchestrator.client import DecisionConflict, OrchestratorUnavailable
from gateway_core.orchestrator.models import PermissionRequestEvent, PermissionRespondBody, PermissionResponseEvent
from gateway_core.runtime import Runtime, open_runtime
from gateway_core.store import CallRecord

CALLS_SHOWN = 200


class ConsoleApp(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "mcp-console"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("r", "review_requests", "review pending requests"),
    ]

    def __init__(self, settings: Settings, orchestrator_port: int = 9403, read_only: bool = False,
                 **gateway_options: Any) -> None:
        super().__init__()
        self.settings = settings
        self.orchestrator_port = orchestrator_port
        self.read_only = read_only
        self.gateway_options = gateway_options
        self.runtime: Runtime | None = None
        self.pending: dict[str, PermissionRequestEvent] = {}
        self.modal: PermissionRequestModal | None = None
        self.calls: deque[CallRecord] = deque(maxlen=CALLS_SHOWN)
        self.operator = f"operator:{_login()}"

    def compose(self) -> ComposeResult:
        yield Static("starting…", id="header")
        yield Static("Services", classes="section-title")
        yield DataTable(id="services", cursor_type="row")
        yield Static("Calls, newest first", classes="section-title")
        yield DataTable(id="calls", cursor_type="row")
        yield Footer()

    async def on_mount(self) -> None:
        services = self.query_one("#services", DataTable)
        services.add_columns("service", "status", "latency", "calls", "errors", "cost USD")
        self.query_one("#calls", DataTable).add_columns("time", "agent", "service", "operation", "status", "ms",
                                                        "tokens", "cost")
        self.runtime = await open_runtime(self.settings, self.orchestrator_port, **self.gateway_options)
        await self.runtime.start()
        for server in self.runtime.servers:
            self.run_worker(server.serve(), exit_on_error=False, group="servers")
        self.run_worker(self._follow_events(), exit_on_error=False, group="events")
        self.set_interval(1.0, self._refresh)
        self._refresh()

    async def on_unmount(self) -> None:
        # Textual cancels the server workers as the app closes; what matters after is the ledger.
        if self.runtime is not None:
            for server in self.runtime.servers:
                server.stop()
            await self.runtime.aclose()

    # -- the gateway's events -------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        assert self.runtime is not None
        async for event in self.runtime.gateway.events.subscribe():
            if isinstance(event, CallFinished):
                self.calls.appendleft(event.record)
                self._add_call_row(event.record)
            elif isinstance(event, PermissionEvent):
                self._permission_event(event.event)
            elif isinstance(event, LinkChanged | HealthChanged):
                self._refresh()

    def _permission_event(self, event: Any) -> None:
        if isinstance(event, PermissionRequestEvent):
            if event.request_id not in self.pending:
                self.pending[event.request_id] = event
                self.bell()
                self._offer_next()
        elif isinstance(event, PermissionResponseEvent):
            self.pending.pop(event.request_id, None)
            if self.modal is not None and self.modal.request.request_id == event.request_id:
                self.modal.dismiss(None)
                self.notify(f"Request {event.request_id} was {event.final_status} elsewhere"
                            + (f" by {event.decided_by}" if event.decided_by else ""))
        self._refresh()

    def _offer_next(self) -> None:
        if self.modal is None and self.pending and not self.read_only:
            self._review(next(iter(self.pending.values())))

    @work(exit_on_error=False, group="modal")
    async def _review(self, request: PermissionRequestEvent) -> None:
        assert self.runtime is not None
        position = list(self.pending).index(request.request_id) + 1 if request.request_id in self.pending else 1
        health = self.runtime.gateway.service_status(request.service_name) \
            if request.service_name in self.runtime.gateway.services else "unknown"
        self.modal = PermissionRequestModal(request, position, len(self.pending), health)
        decision = await self.push_screen_wait(self.modal)
        self.modal = None
        if decision is not None:  # "later" leaves it queued until the operator asks again (r)
            await self._send(decision)
            self._offer_next()

    async def _send(self, decision: Decision) -> None:
        assert self.runtime is not None and self.runtime.gateway.orchestrator is not None
        body = PermissionRespondBody(request_id=decision.request_id, approved=decision.approved,
                                     reason=decision.reason, scope=decision.scope,
                                     expires_in_seconds=decision.expires_in_seconds, decided_by=self.operator)
        try:
            await self.runtime.gateway.orchestrator.respond(body)
        except DecisionConflict as conflict:
            self.notify(f"Already decided: {conflict.first.get('status')} by {conflict.first.get('decided_by')}")
        except OrchestratorUnavailable as exc:
            self.notify(f"The decision did not reach the orchestrator: {exc}", severity="error")
            return
        self.pending.pop(decision.request_id, None)
        self._refresh()

    def action_review_requests(self) -> None:
        self._offer_next()

    # -- drawing --------------------------------------------------------------------------------------

    def _add_call_row(self, record: CallRecord) -> None:
        table = self.query_one("#calls", DataTable)
        table.add_row(iso_utc(record.ts)[11:19], record.agent_id or "-", record.service or "-",
                      record.operation or record.method or "-",
                      record.status if record.error_code is None else f"{record.status} {record.error_code}",
                      f"{record.duration_ms:.0f}", str(record.tokens), f"{record.cost_usd:.4f}",
                      key=record.id)
        table.move_cursor(row=0)
        if table.row_count > CALLS_SHOWN:
            table.remove_row(table.coordinate_to_cell_key(Coordinate(table.row_count - 1, 0)).row_key)

    def _refresh(self) -> None:
        if self.runtime is None:
            return
        gateway = self.runtime.gateway
        link = gateway.link_state.describe() if gateway.link_state else "not linked"
        totals = gateway.totals
        mode = "  READ-ONLY" if self.read_only else ""
        self.query_one("#header", Static).update(
            f"gateway {self.runtime.gateway_server.url}   orchestrator {link}   pending {len(self.pending)}   "
            f"calls {totals.calls}  tokens {totals.tokens}  cost ${totals.cost_usd:.4f}{mode}")
        table = self.query_one("#services", DataTable)
        for name in gateway.catalog.names():
            report = gateway.health.reports.get(name)
            used = gateway.totals_by_service.get(name)
            cells = (name, gateway.service_status(name),
                     f"{report.latency_ms:.0f} ms" if report and report.latency_ms is not None else "-",
                     str(used.calls if used else 0), str(used.errors if used else 0),
                     f"{used.cost_usd:.4f}" if used else "0.0000")
            if name not in table.rows:
                table.add_row(*cells, key=name)
                continue
            for column, value in zip(table.columns, cells, strict=True):  # only changed cells repaint
                if table.get_cell(name, column) != value:
                    table.update_cell(name, column, value)


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
