"""The permission modal: one pending request, decided from the keyboard.

Keys live only here (never on the dashboard), so a stray keypress elsewhere approves nothing. A
destructive request needs a second, distinct key (`y`) to approve. `t` sets a time limit first
(1 h, 8 h, 24 h or typed), then `s` or `o` approves for that long."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from console.formatting import describe_age
from console.keymap import PERMISSION_REQUEST_KEYS, bindings
from console.messages import QueueChanged
from gateway_core.cli import UsageError, parse_duration
from gateway_core.orchestrator.models import PermissionRequestEvent
from gateway_core.store.records import Scope

TIME_LIMITS = {"1": 3600.0, "8": 8 * 3600.0, "2": 24 * 3600.0}  # key → seconds; "c" asks for one


@dataclass(frozen=True)
class Decision:
    request_id: str
    approved: bool
    scope: Scope | None = None
    expires_in_seconds: float | None = None
    reason: str | None = None


class PermissionRequestModal(ModalScreen[Decision | None]):
    BINDINGS = bindings(PERMISSION_REQUEST_KEYS)
    AUTO_FOCUS = None  # keys go to the modal; the text field takes focus only when it opens

    def __init__(self, request: PermissionRequestEvent, position: int, waiting: int, service_health: str,
                 clock: Callable[[], float]) -> None:
        super().__init__()
        self.request = request
        self.position = position
        self.waiting = waiting
        self.service_health = service_health
        self.clock = clock
        self.armed: Scope | None = None  # a destructive approval waiting for `y`
        self.time_limit: float | None = None
        self.stage: Literal["keys", "choose-limit", "custom-limit", "deny-reason"] = "keys"

    @property
    def destructive(self) -> bool:
        return self.request.risk == "destructive"

    def compose(self) -> ComposeResult:
        request = self.request
        agent = f"{request.agent_name} ({request.agent_id})" if request.agent_name else request.agent_id
        preview = json.dumps(request.params_preview, indent=1, sort_keys=True) if request.params_preview else "-"
        risk = request.risk or "unknown"
        with Vertical(id="permission-dialog", classes=f"risk-{risk}"):
            yield Static(f"Permission request  {self.position} of {self.waiting}", id="permission-title")
            yield Static(f"agent      {agent}\n"
                         f"service    {request.service_name}   health: {self.service_health}\n"
                         f"operation  {request.operation or '(whole service)'}\n"
                         f"risk       {risk.upper() if risk == 'destructive' else risk}\n"
                         f"reason     {request.reason or '-'}", id="permission-facts")
            yield Static(f"arguments  {preview}", id="permission-arguments")
            yield Static(self._timing(), id="permission-timing")
            yield Input(id="permission-input", disabled=True)  # enabled only while it is open
            yield Static(self._hint(), id="permission-hint")

    def on_mount(self) -> None:
        self.query_one("#permission-input", Input).display = False

    def on_queue_changed(self, message: QueueChanged) -> None:
        """Another request arrived (or left) while this one is open."""
        self.position, self.waiting = message.position, message.waiting
        self.query_one("#permission-title", Static).update(f"Permission request  {self.position} of {self.waiting}")

    def _timing(self) -> str:
        now = self.clock()
        age = now - self.request.timestamp.timestamp() if self.request.timestamp else 0
        expiry = (f", expires in {describe_age(self.request.expires_at.timestamp() - now)}"
                  if self.request.expires_at else "")
        return f"asked {describe_age(age)} ago{expiry}"

    def _hint(self) -> str:
        if self.stage == "choose-limit":
            return "time limit:  1 one hour   8 eight hours   2 a day   c custom   esc back"
        if self.stage == "custom-limit":
            return "type a duration (90m, 2h, 3d) and press enter; esc back"
        if self.stage == "deny-reason":
            return "DENY: a reason for the agent (optional), enter to deny, esc back"
        if self.armed is not None:
            return f"DESTRUCTIVE: press y to approve ({self._scope_text(self.armed)}), any other key cancels"
        if self.time_limit is not None:
            return (f"for {describe_age(self.time_limit)}:  s approve the service   o the operation   "
                    "d deny   esc back")
        return "a approve this call   s the service   o the operation   t time limit   d deny   esc later"

    def _scope_text(self, scope: Scope) -> str:
        limit = f" for {describe_age(self.time_limit)}" if self.time_limit else ""
        return f"{scope}{limit}"

    def _show(self) -> None:
        self.query_one("#permission-hint", Static).update(self._hint())
        field = self.query_one("#permission-input", Input)
        field.display = self.stage in ("custom-limit", "deny-reason")
        field.disabled = not field.display
        if field.display:
            field.value = ""
            field.placeholder = "e.g. 2h" if self.stage == "custom-limit" else "reason (optional)"
            field.focus()

    # -- keys ---------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a sub-choice or a text field is open, only its own keys count.
        return self.stage == "keys" or action == "later"

    def action_approve(self, scope: Scope) -> None:
        if scope == "once" and self.time_limit is not None:
            return  # a one-time approval has no time limit to give
        if self.destructive:
            self.armed = scope
            self._show()
            return
        self._approve(scope)

    def _approve(self, scope: Scope) -> None:
        self.dismiss(Decision(self.request.request_id, True, scope,
                              None if scope == "once" else self.time_limit))

    def action_time_limit(self) -> None:
        self.armed = None
        self.stage = "choose-limit"
        self._show()

    def action_deny(self) -> None:
        self.armed = None
        self.stage = "deny-reason"
        self._show()

    def action_later(self) -> None:
        if self.stage != "keys" or self.armed is not None or self.time_limit is not None:
            self.stage, self.armed, self.time_limit = "keys", None, None  # esc steps back first
            self._show()
            return
        self.dismiss(None)

    def on_key(self, event: events.Key) -> None:
        if self.stage == "choose-limit" and event.key != "escape":
            event.stop()
            if event.key in TIME_LIMITS:
                self.time_limit, self.stage = TIME_LIMITS[event.key], "keys"
            elif event.key == "c":
                self.stage = "custom-limit"
            self._show()
        elif self.stage == "keys" and self.armed is not None and event.key != "escape":
            event.stop()
            if event.key == "y":
                self._approve(self.armed)
            else:
                self.armed = None
                self._show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if self.stage == "deny-reason":
            self.dismiss(Decision(self.request.request_id, False, reason=text or None))
            return
        try:
            self.time_limit = parse_duration(text)
        except UsageError as exc:
            self.query_one("#permission-hint", Static).update(f"{exc}; esc back")
            return
        self.stage = "keys"
        self._show()
        self.set_focus(None)
