"""The permission modal: one pending request, decided from the keyboard.

Keys live only here (never on the dashboard), so a stray keypress elsewhere approves nothing. A
destructive request needs a second, distinct key to approve."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from gateway_core.orchestrator.models import PermissionRequestEvent

Scope = Literal["once", "service", "operation"]


@dataclass(frozen=True)
class Decision:
    request_id: str
    approved: bool
    scope: Scope | None = None
    expires_in_seconds: float | None = None
    reason: str | None = None


def describe_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class PermissionRequestModal(ModalScreen[Decision | None]):
    BINDINGS = [
        Binding("a", "approve('once')", "approve this call"),
        Binding("s", "approve('service')", "approve the service"),
        Binding("o", "approve('operation')", "approve the operation"),
        Binding("d", "deny", "deny"),
        Binding("y", "confirm", "confirm", show=False),
        Binding("escape", "later", "later"),
    ]

    def __init__(self, request: PermissionRequestEvent, position: int, waiting: int, service_health: str) -> None:
        super().__init__()
        self.request = request
        self.position = position
        self.waiting = waiting
        self.service_health = service_health
        self._armed: Scope | None = None

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
                         f"risk       {risk}\n"
                         f"reason     {request.reason or '-'}", id="permission-facts")
            yield Static(f"arguments  {preview}", id="permission-arguments")
            yield Static(self._timing(), id="permission-timing")
            yield Static(self._hint(), id="permission-hint")

    def _timing(self) -> str:
        now = time.time()
        age = now - self.request.timestamp.timestamp() if self.request.timestamp else 0
        expiry = (f", expires in {describe_age(self.request.expires_at.timestamp() - now)}"
                  if self.request.expires_at else "")
        return f"asked {describe_age(age)} ago{expiry}"

    def _hint(self) -> str:
        if self._armed is not None:
            return f"DESTRUCTIVE: press y to approve ({self._armed}), any other key to cancel"
        return "a approve this call   s the service   o the operation   d deny   esc later"

    def action_approve(self, scope: Scope) -> None:
        if self.destructive:
            self._armed = scope  # a second, distinct key confirms
            self.query_one("#permission-hint", Static).update(self._hint())
            return
        self.dismiss(Decision(self.request.request_id, True, scope))

    def action_confirm(self) -> None:
        if self._armed is not None:
            self.dismiss(Decision(self.request.request_id, True, self._armed))

    def action_deny(self) -> None:
        self.dismiss(Decision(self.request.request_id, False, reason="denied from the console"))

    def action_later(self) -> None:
        self.dismiss(None)

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if self._armed is not None and key not in ("y", "a", "s", "o"):
            self._armed = None
            self.query_one("#permission-hint", Static).update(self._hint())
