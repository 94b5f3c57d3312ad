"""ConsoleApp: the gateway and its orchestrator inside the app's event loop (or, attached, a gateway that
runs elsewhere), with live health, calls and cost, permission requests decided from the keyboard, any
service's operations by hand and the audit log.

The app owns the console's state (the gateway view, the pending queue, the recent calls) and hands it to
its screens; it tells the screen on top what changed, and screens ask for things, with messages
(console/messages.py). Everything the console reads of the gateway or does to it goes through one narrow
interface (gateway_core/operator_api.py). Network and disk work runs in workers or tasks; nothing here
waits on them in a key handler.

Every stop (q, SIGTERM, SIGHUP, the terminal lost) goes one way: the gateway and orchestrator stop (held
calls answered), the ledger is written, the sandbox stops, and only then does Textual exit and touch the
terminal; a watchdog ends the process if that does not finish in time. An attached console stops only
itself: the gateway it watches goes on serving."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import getpass
import logging
import signal
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.content import Content
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Static

from console.commands import ConsoleCommands
from console.formatting import STATUS_LABEL
from console.keymap import APP_KEYS, KNOWN_IDS, bindings
from console.messages import (
    CallsArrived,
    OpenOperations,
    PendingChanged,
    PermissionsChanged,
    QueueChanged,
    ReviewRequest,
    ShowCalls,
    ShowScreen,
    StatusChanged,
    ToolsChanged,
)
from console.modals.confirm import ConfirmModal
from console.modals.permission_request import ALL_SCOPES, Decision, PermissionRequestModal
from console.screens.audit import AuditScreen
from console.screens.dashboard import DashboardScreen
from console.screens.help import HelpScreen
from console.screens.operations import OperationsScreen
from console.screens.permissions import PermissionsScreen
from console.state import ConsoleState, request_key
from console.terminal import console_driver
from console.widgets.status_header import HeaderPart
from gateway_core.clock import Clock, system_clock
from gateway_core.config import ConfigError, Settings
from gateway_core.errors import GatewayError
from gateway_core.events import (
    AttachmentChanged,
    CallFinished,
    HealthChecked,
    LinkChanged,
    OperatorsChanged,
    PermissionEvent,
    Resynced,
    ToolsListed,
)
from gateway_core.gateway import OperatorCaller
from gateway_core.operator_api import GatewayView, LocalGateway
from gateway_core.operator_client import RemoteGateway
from gateway_core.orchestrator.client import DecisionConflict, OrchestratorUnavailable, UnknownRequest
from gateway_core.orchestrator.models import (
    PermissionRequestEvent,
    PermissionRespondBody,
    PermissionResponseEvent,
    PermissionRevokedEvent,
)
from gateway_core.permission_gate import DecisionNotSupported
from gateway_core.redaction import printable
from gateway_core.runtime import Runtime, open_runtime
from gateway_core.server import CannotListen
from gateway_core.watchdog import ExitWatchdog

if TYPE_CHECKING:
    from sandbox import Sandbox  # the sandbox's stand-ins load only when --sandbox asks for them (console/cli.py)

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
IN_FLIGHT_SECONDS = 2.0  # what agents have in flight when the console stops gets this long to be answered
STOP_DEADLINE_SECONDS = 4.0  # from the start of a stop to the process gone, whatever hangs (the watchdog)


class ConsoleApp(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "mcp-console"
    BINDINGS = bindings(APP_KEYS)
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    ENABLE_COMMAND_PALETTE = True

    status: reactive[tuple[HeaderPart, ...]] = reactive((("starting…", 0),))

    def __init__(self, settings: Settings, orchestrator_port: int = 9403, *, read_only: bool = False,
                 serve_gateway: bool = True, sandbox: Sandbox | None = None, clock: Clock = system_clock,
                 login: str | None = None, gateway_address_shown: str | None = None,
                 remote: RemoteGateway | None = None, **gateway_options: Any) -> None:
        """`remote`: attach to that gateway instead of running one (nothing else is started). `gateway_address_shown`
        replaces the gateway's address in the header (snapshots bind any free port)."""
        super().__init__(driver_class=console_driver(on_terminal_lost=lambda: self.stop("terminal lost")))
        unknown = set(settings.console.keys) - KNOWN_IDS
        if unknown:
            raise ConfigError(f"console.keys: no key with the id {', '.join(sorted(unknown))} "
                              f"(ids: {', '.join(sorted(KNOWN_IDS))})")
        self.settings = settings
        self.orchestrator_port = orchestrator_port
        self.read_only = read_only
        self.serve_gateway = serve_gateway
        self.sandbox = sandbox
        self.gateway_address_shown = gateway_address_shown
        self.gateway_options = gateway_options
        self.remote = remote
        self.operator = OperatorCaller(login or _login(), read_only)
        self.state = ConsoleState(clock, read_only,
                                  not_in_sandbox=sandbox.not_served if sandbox is not None else ())
        self.runtime: Runtime | None = None
        self.watchdog = ExitWatchdog(STOP_DEADLINE_SECONDS)
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[None] | None = None
        self._serving: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Task[None] | None = None
        self._services_closing: asyncio.Task[None] | None = None
        self.modal: PermissionRequestModal | None = None
        self._reviewing = False  # a review's worker is started (its modal may not be up yet)
        self._snoozed_until = 0.0  # monotonic: until then a new request does not open the modal by itself
        self.calls_seen = 0  # every call event received (the table keeps only the newest)
        self._calls_changed = False
        self._names_asked: set[str] = set()
        self.dashboard = DashboardScreen(self.state)
        self.permissions_screen = PermissionsScreen(self.state)
        self.operations_screen = OperationsScreen(self.state)
        self.audit_screen = AuditScreen(self.state)
        self.screens_by_name: dict[str, Screen[None]] = {
            "dashboard": self.dashboard, "permissions": self.permissions_screen,
            "operations": self.operations_screen, "audit": self.audit_screen}

    def compose(self) -> ComposeResult:
        yield Static("")  # the default screen stays underneath the installed ones

    async def on_mount(self) -> None:
        self.set_keymap(self.settings.console.keys)
        for name, screen in self.screens_by_name.items():
            self.install_screen(screen, name)
        await self.push_screen("dashboard")
        self._event_loop = asyncio.get_running_loop()
        self._starting = asyncio.create_task(self._start())  # first paint need not wait for it
        if not self.is_headless:
            # A dropped SSH session (SIGHUP) or a kill (SIGTERM) stops like q. Python's handler, not the loop's:
            # it runs even while the loop is blocked, so the watchdog is armed whatever hangs.
            for signal_number in STOP_SIGNALS:
                signal.signal(signal_number, self._signalled)

    async def _start(self) -> None:
        if self.remote is not None:
            await self._attach_to(self.remote)
            return
        try:
            settings = self.settings
            if self.sandbox is not None:
                await self.sandbox.start()
                settings = self.sandbox.configure(settings)
            self.runtime = await open_runtime(settings, self.orchestrator_port, self.serve_gateway, self.state.clock,
                                              **self.gateway_options)
        except CannotListen as exc:
            flag = "--gateway-port" if exc.port == settings.server.port else "--orchestrator-port"
            self._give_up(f"{exc} (another mcp-console? {flag} names another port)")
            return
        except Exception as exc:  # a store that cannot be opened, say: say so and stop, never hang on "starting"
            self._give_up(f"cannot start: {exc}")
            return
        await self.runtime.start()
        self.state.gateway = LocalGateway(self.runtime, self.operator)
        # Tasks of ours, not workers: Textual cancels its workers when it exits, which would cut what they answer.
        self._serving = [asyncio.create_task(server.serve()) for server in self.runtime.servers]
        if self.sandbox is not None and self.runtime.gateway_url is not None:
            gateway = self.runtime.gateway
            await self.sandbox.start_agents(gateway.store, gateway.hasher, self.runtime.gateway_url)
            await gateway.authenticator.refresh()
        self._watch()

    async def _attach_to(self, remote: RemoteGateway) -> None:
        try:
            await remote.connect()
        except GatewayError as exc:
            self._give_up(f"cannot attach: {exc.message}")
            return
        self.state.gateway = remote
        self._watch()

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification, the screens' too: they quote agents, orchestrators and upstreams, so they are
        text (never markup, whatever `markup` says) and show no control character to the terminal."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout, markup=False)

    def _give_up(self, why: str) -> None:
        """Ends a console that cannot start: the terminal shows why once it is back, and the log keeps it (over
        SSH the terminal may be gone by then)."""
        log.error("cannot run: %s", why)
        self.exit(return_code=1, message=Text(f"mcp-console: {why}"))  # printed by Rich: text, not its markup

    def _watch(self) -> None:
        """Follows the gateway's events and keeps the screens current: once the gateway view is there."""
        self.run_worker(self._follow_events(), exit_on_error=False, group="events")
        self.set_interval(0.5, self._show_new_calls)
        self.set_interval(1.0, self._refresh)
        self.set_interval(5.0, self._load_agent_names)
        self._load_agent_names()
        self._refresh()
        gc.freeze()  # what start-up built lives as long as the app: keep it out of every collection's scan

    # -- stopping -------------------------------------------------------------------------------------

    def stop(self, reason: str) -> None:
        """Stops the console: services first (the ledger written), then the app. Safe from any thread and from a
        signal handler; later calls only add their reason to the log."""
        if not self.is_headless:  # a headless app (the Pilot's) lives in a process it must not end
            self.watchdog.arm(reason)
        log.info("stopping (%s)", reason)
        if self._event_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the app has already returned
                self._event_loop.call_soon_threadsafe(self._begin_stop, reason)

    def _signalled(self, signal_number: int, frame: FrameType | None) -> None:
        self.stop(signal.Signals(signal_number).name)

    def _begin_stop(self, reason: str) -> None:
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop_then_exit(reason))

    async def _stop_then_exit(self, reason: str) -> None:
        await self._close_services()
        log.info("stopped (%s): ledger written, ports released", reason)
        self.exit()

    def _close_services(self) -> asyncio.Task[None]:
        """The gateway, orchestrator and sandbox closing: started by the first call, awaited by every caller."""
        if self._services_closing is None:
            self._services_closing = asyncio.create_task(self._close_services_once())
        return self._services_closing

    async def _close_services_once(self) -> None:
        if self._starting is not None:
            await asyncio.wait([self._starting])  # a stop during start-up closes what the start opened
        if self.runtime is not None:
            self.runtime.stop()  # held calls answered at once; the servers answer what is in flight
            with contextlib.suppress(TimeoutError):  # what is in flight after that is cut
                await asyncio.wait_for(asyncio.gather(*self._serving, return_exceptions=True), IN_FLIGHT_SECONDS)
            await self.runtime.aclose()  # the ledger's last rows written, the store closed
        if self.remote is not None:
            await self.remote.aclose()
        if self.sandbox is not None:
            await self.sandbox.aclose()

    async def action_quit(self) -> None:
        self._confirm_quit()

    @work(exit_on_error=False, group="quit", exclusive=True)
    async def _confirm_quit(self) -> None:
        """A stray q over SSH must not stop the gateway for every agent: a console that serves them asks."""
        gateway = self.state.gateway
        if gateway is not None and gateway.attached_to is None and gateway.address is not None:
            agents = gateway.agents_served()
            question = (f"Stop the gateway for {agents} agent{'s' if agents != 1 else ''}? Until it is back they "
                        "get no answers, and held calls are answered 'gateway stopping'.")
            if not await self.push_screen_wait(ConfirmModal(Content(question))):
                return
        self.stop("q")

    async def on_unmount(self) -> None:
        await self._close_services()  # for an exit that did not come through stop (the Pilot's, a failed start)

    # -- the gateway's events -------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        assert self.state.gateway is not None
        async for event in self.state.gateway.subscribe():
            if isinstance(event, CallFinished):
                self.calls_seen += 1
                self.state.calls.appendleft(event.record)
                self._calls_changed = True
            elif isinstance(event, PermissionEvent):
                self._permission_event(event.event)
            elif isinstance(event, Resynced):
                self._resynced(event)
            elif isinstance(event, ToolsListed):
                self._tell_screens(ToolsChanged)
            elif isinstance(event, LinkChanged | HealthChecked | OperatorsChanged | AttachmentChanged):
                self._refresh()

    def _resynced(self, event: Resynced) -> None:
        """An attached console's view was reloaded whole: what is pending is what the gateway says now."""
        self.state.pending.clear()
        for request in event.pending:
            self.state.add_request(request)
        if self.modal is not None and request_key(self.modal.request) not in self.state.pending:
            self.modal.dismiss(None)
            self.notify("The request on screen was decided while this console was away", severity="warning")
        self._calls_changed = True
        self.state.permission_changes += 1
        self._tell_screens(PermissionsChanged)
        self._tell_screens(PendingChanged)
        self._refresh()
        self._offer_next(automatic=True)

    def _permission_event(self, event: Any) -> None:
        pending = self.state.pending
        if isinstance(event, PermissionRequestEvent):
            if self.state.add_request(event):
                self.bell()
                self._offer_next(automatic=True)
        elif isinstance(event, PermissionResponseEvent):
            settled = self.state.settle(event)
            if self.modal is not None and request_key(self.modal.request) in settled:
                self.modal.dismiss(None)
                self.notify(f"Request from {self.state.agent_name(event.agent_id)} for {event.service_name} was "
                            f"{event.final_status} elsewhere" + (f" by {event.decided_by}" if event.decided_by else ""))
        if self.modal is not None and request_key(self.modal.request) in pending:
            self.modal.post_message(QueueChanged(list(pending).index(request_key(self.modal.request)) + 1,
                                                 len(pending)))
        if isinstance(event, PermissionResponseEvent | PermissionRevokedEvent):
            self.state.permission_changes += 1
            self._tell_screens(PermissionsChanged)
        self._tell_screens(PendingChanged)
        self._refresh()

    # -- deciding -------------------------------------------------------------------------------------

    def _offer_next(self, automatic: bool = False) -> None:
        """Opens the modal on the oldest request. Opened by itself (`automatic`) it never takes the keyboard
        from an operator who is typing or has just deferred one (`esc` snoozes it): then a notification
        says what arrived, beside the bell and the header's count, and `r` opens it."""
        if self._reviewing or not self.state.pending or self.read_only:
            return
        request = next(iter(self.state.pending.values()))
        if automatic and (time.monotonic() < self._snoozed_until or isinstance(self.focused, Input)):
            newest = next(reversed(self.state.pending.values()))  # what just arrived, not the oldest
            self.notify(f"{self.state.agent_name(newest.agent_id)} asks for {newest.service_name}."
                        f"{newest.operation or '*'}: r reviews", title="Permission request")
            return
        self._open_review(request)

    def on_review_request(self, message: ReviewRequest) -> None:
        """Opens the modal for this pending request (from the permissions screen or the palette)."""
        request = self.state.pending.get(message.key)
        if request is None:
            self.notify("That request is no longer pending", severity="warning")
        elif self.read_only:
            self.notify("Read-only console: requests are decided elsewhere", severity="warning")
        elif not self._reviewing:
            self._open_review(request)

    def _open_review(self, request: PermissionRequestEvent) -> None:
        """Starts the one review at a time. Marked here, not in the worker: events that arrive before the worker
        runs (every request pending at start) would each start a modal of their own."""
        self._reviewing = True
        self._review(request)

    @work(exit_on_error=False, group="modal")
    async def _review(self, request: PermissionRequestEvent) -> None:
        try:
            decision = await self._decision_on(request)
        finally:
            self.modal, self._reviewing = None, False
        if decision is not None:
            await self._send(request, decision)
            self._offer_next()
        elif request_key(request) in self.state.pending:  # "later": it stays queued, new ones wait a while for r
            self._snoozed_until = time.monotonic() + self.settings.console.snooze_seconds
        else:  # decided elsewhere, before or while its modal was up: the next one, as when a request comes
            self._offer_next(automatic=True)

    async def _decision_on(self, request: PermissionRequestEvent) -> Decision | None:
        """The operator's decision in the modal; None for "later", or when it was decided before the modal came
        up (elsewhere, or by the orchestrator's expiry, between the review's start and now)."""
        pending, key = self.state.pending, request_key(request)
        if key not in pending:
            return None
        position = list(pending).index(key) + 1
        gateway = self.state.gateway
        services = {service.name: service for service in gateway.services()} if gateway is not None else {}
        health = STATUS_LABEL[services[request.service_name].status if request.service_name in services
                              else "unknown"]
        capabilities = gateway.capabilities if gateway is not None else None
        scopes, expiry, note = ALL_SCOPES, True, ""
        if capabilities is not None and (set(capabilities.scopes) != set(ALL_SCOPES) or not capabilities.expiry):
            scopes, expiry = tuple(capabilities.scopes), capabilities.expiry
            note = (f"This orchestrator grants only {' or '.join(capabilities.scopes)}"
                    f"{'' if expiry else ', for ever (no time limit)'}: nothing more is offered.")
        self.modal = PermissionRequestModal(request, position, len(pending), health, self.state.clock,
                                            agent_name=request.agent_name or self.state.agent_names.get(
                                                request.agent_id), keymap=self.settings.console.keys,
                                            scopes=scopes, expiry=expiry, limits_note=note,
                                            guard_seconds=self.settings.console.decision_guard_seconds)
        decision: Decision | None = await self.push_screen_wait(self.modal)
        return decision

    async def _send(self, request: PermissionRequestEvent, decision: Decision) -> None:
        assert self.state.gateway is not None
        try:
            body = PermissionRespondBody(request_id=decision.request_id, approved=decision.approved,
                                         reason=decision.reason, scope=decision.scope,
                                         expires_in_seconds=decision.expires_in_seconds)
        except ValidationError as exc:  # the modal checks the limits: this is only never to lose a decision
            self.notify(f"The decision was not made: {exc.errors()[0]['msg']}. The request stays in the queue.",
                        severity="error", timeout=10)
            return
        key = request_key(request)
        self.state.pending.pop(key, None)  # off the queue at once: the keypress is the decision
        self._refresh()
        try:
            await self.state.gateway.decide(body)
        except DecisionConflict as conflict:
            self.notify(f"Already decided: {conflict.first.get('status')} by {conflict.first.get('decided_by')}")
        except UnknownRequest:
            self.notify(f"The orchestrator no longer knows the request of {self.state.agent_name(request.agent_id)} "
                        f"for {request.service_name}: it has left the queue", severity="warning", timeout=10)
        except (OrchestratorUnavailable, DecisionNotSupported, GatewayError) as exc:
            self.notify(f"The decision was not made: {exc}. The request is back in the queue.",
                        severity="error", timeout=10)
            self.state.pending[key] = request
            self.state.pending.move_to_end(key, last=False)
        self._refresh()

    # -- actions --------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Over a modal only quitting and help work: switching screens would take the modal's place.
        return action in ("quit", "help", "command_palette") or not isinstance(self.screen, ModalScreen)

    def action_show_screen(self, name: str) -> None:
        screen = self.screens_by_name.get(name)
        if screen is not None and screen is not self.screen and not isinstance(self.screen, ModalScreen):
            self.switch_screen(screen)

    def on_show_screen(self, message: ShowScreen) -> None:
        self.action_show_screen(message.name)

    def action_open_operations(self) -> None:
        self.post_message(OpenOperations())

    def on_open_operations(self, message: OpenOperations) -> None:
        self.action_show_screen("operations")
        self.operations_screen.post_message(OpenOperations(message.service, message.operation))

    def on_show_calls(self, message: ShowCalls) -> None:
        self.action_show_screen("dashboard")
        self.dashboard.post_message(ShowCalls(message.text))

    def action_review_requests(self) -> None:
        if self.read_only and self.state.pending:
            self.notify("Read-only console: requests are decided elsewhere", severity="warning")
        elif not self.state.pending:
            self.notify("No requests are waiting")
        self._snoozed_until = 0.0
        self._offer_next()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.settings.console.keys))

    # -- drawing --------------------------------------------------------------------------------------

    def _show_new_calls(self) -> None:
        if not self._calls_changed:
            return
        self._calls_changed = False
        names = self.state.agent_names
        unnamed = {r.agent_id for r in self.state.calls if r.agent_id and r.agent_id not in names}
        if unnamed - self._names_asked:  # a new agent: its name, soon (asked once per id)
            self._names_asked |= unnamed
            self._load_agent_names()
        self._tell_screens(CallsArrived)

    @work(exit_on_error=False, group="agent-names", exclusive=True)
    async def _load_agent_names(self) -> None:
        if self.state.gateway is not None:
            self.state.agent_names = await self.state.gateway.agent_names()

    def _refresh(self) -> None:
        gateway = self.state.gateway
        if gateway is None:
            return
        today = gateway.today().total
        link_state = gateway.link
        if link_state is None:
            link = "not linked"
        elif link_state.status == "connected":
            lists = gateway.capabilities is None or gateway.capabilities.pending_list
            link = "linked" if lists else "linked, lists nothing: requests filed while no console watched are unseen"
        else:
            link = f"{link_state.describe()}: requests cannot be decided"
        parts: list[HeaderPart] = [self._where(gateway), (f"orch {link}", 1),
                                   (f"{len(self.state.pending)} pending", 0), (f"today ${today.cost_usd:.4f}", 0),
                                   (f"{today.calls} calls {today.tokens} tok", 2)]
        operators = len(gateway.operators_attached())
        if gateway.attached_to is not None or operators > 1:
            parts.insert(1, (f"{operators} operator{'s' if operators != 1 else ''}", 2))
        if self.read_only:
            parts.append(("READ-ONLY", 0))
        self.status = tuple(parts)
        self._tell_screens(StatusChanged)

    def _where(self, gateway: GatewayView) -> HeaderPart:
        """Which gateway this is: the one served here, or the one attached to (as whom, and whether the stream
        is up), or none (attached to an orchestrator only: no calls, health or cost to show)."""
        if gateway.attached_to is not None:
            where = self.gateway_address_shown or gateway.attached_to
            attachment = gateway.attachment
            if attachment is not None and attachment.status != "connected":
                return f"gw {where}: {attachment.describe()}", 0
            return f"attached to {where} as {gateway.operator.login}", 0  # who acts, and where: always shown
        if gateway.address is None:
            return "no gateway here: calls, health and cost are not shown", 3
        return f"gw {self.gateway_address_shown or gateway.address}", 3

    def _tell_screens(self, change: type[Message]) -> None:
        """Tells every screen on the stack (the one under a modal is still in sight) what changed."""
        for screen in self.screen_stack:
            screen.post_message(change())


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
