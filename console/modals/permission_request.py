"""The permission modal: one pending request, decided from the keyboard.

Keys live only here (never on the dashboard), so a stray keypress elsewhere approves nothing. Every key
is declared in console/keymap.py and the hints are read from there, so a remapped key shows as remapped.
A destructive request needs a second, distinct key (`y`) to approve. `t` sets a time limit first (1 h,
8 h, a day or typed), then `s` or `o` approves for that long. Only what the linked orchestrator can grant
is offered. Every argument can be read before deciding: the list scrolls, says how much is below, and
`f` shows the whole request. The header, the age and the time to expiry stay live while it is open."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from console.formatting import describe_age
from console.keymap import (
    APPROVE_ONCE,
    APPROVE_OPERATION,
    APPROVE_SERVICE,
    CONFIRM_DESTRUCTIVE,
    DENY,
    FULL_REQUEST,
    LATER,
    LIMIT_DAY,
    LIMIT_EIGHT_HOURS,
    LIMIT_HOUR,
    LIMIT_TYPED,
    OVER_THE_REQUEST,
    PERMISSION_REQUEST_KEYS,
    TIME_LIMIT,
    Key,
    bindings,
    shown_keys,
)
from console.messages import QueueChanged
from console.modals.text_view import TextView
from console.widgets.keys_footer import KeysFooter
from console.widgets.status_header import StatusHeader
from gateway_core.cli import UsageError, parse_duration
from gateway_core.clock import iso_utc
from gateway_core.orchestrator.models import MAX_GRANT_SECONDS, MAX_REASON_CHARS, PermissionRequestEvent
from gateway_core.redaction import printable
from gateway_core.store.records import Scope

Stage = Literal["keys", "choose-limit", "custom-limit", "deny-reason"]
ALL_SCOPES: tuple[Scope, ...] = ("once", "operation", "service")
SCOPE_KEYS: dict[Scope, Key] = {"once": APPROVE_ONCE, "operation": APPROVE_OPERATION, "service": APPROVE_SERVICE}
# Which actions each stage takes (esc, `later`, steps back from every one).
STAGE_ACTIONS: dict[Stage, frozenset[str]] = {
    "keys": frozenset({"approve", "time_limit", "deny", "later", "full_request", "confirm"}),
    "choose-limit": frozenset({"limit", "typed_limit", "later"}),
    "custom-limit": frozenset({"later"}),
    "deny-reason": frozenset({"later"}),
}


@dataclass(frozen=True)
class Decision:
    request_id: str
    approved: bool
    scope: Scope | None = None
    expires_in_seconds: float | None = None
    reason: str | None = None


def request_text(request: PermissionRequestEvent) -> str:
    """The whole request as the orchestrator sent it (its preview already redacted by the gateway), as JSON
    written in ASCII: a lone surrogate it sent (pydantic's JSON mode refuses one) is written out too."""
    return json.dumps(request.model_dump(exclude_none=True), indent=2, sort_keys=True,
                      default=lambda moment: iso_utc(moment.timestamp()))  # the timestamps, as they came


class PermissionRequestModal(ModalScreen[Decision | None]):
    BINDINGS = bindings((*PERMISSION_REQUEST_KEYS, *OVER_THE_REQUEST))
    AUTO_FOCUS = "#permission-arguments"  # up and down scroll the arguments; every other key is the modal's

    def __init__(self, request: PermissionRequestEvent, position: int, waiting: int, service_health: str,
                 clock: Callable[[], float], *, agent_name: str | None = None, keymap: Mapping[str, str] | None = None,
                 scopes: Collection[Scope] = ALL_SCOPES, expiry: bool = True, limits_note: str = "",
                 guard_seconds: float = 0.0) -> None:
        """`scopes` and `expiry`: what the linked orchestrator can grant (`limits_note` says why not more);
        keys pressed within `guard_seconds` of it coming up are ignored ([console] decision_guard_seconds)."""
        super().__init__()
        self.request = request
        self.position = position
        self.waiting = waiting
        self.service_health = service_health
        self.clock = clock
        self.agent_name = agent_name or request.agent_name
        self.keymap = keymap or {}
        self.scopes = tuple(scope for scope in ALL_SCOPES if scope in scopes)
        self.expiry = expiry
        self.limits_note = limits_note
        self.armed: Scope | None = None  # a destructive approval waiting for `y`
        self.time_limit: float | None = None
        self.stage: Stage = "keys"
        self.guard_seconds = guard_seconds
        self._keys_from = float("inf")  # set when it is on screen

    @property
    def destructive(self) -> bool:
        return self.request.risk == "destructive"

    def compose(self) -> ComposeResult:
        request = self.request
        agent = f"{self.agent_name} ({request.agent_id})" if self.agent_name else request.agent_id
        reason = request.reason or "-"
        if self.agent_name:  # the reason names the agent by id: the operator reads names
            reason = reason.replace(request.agent_id, self.agent_name)
        risk = request.risk or "unknown"
        yield StatusHeader(id="header")  # live over the modal, as on every screen
        with Vertical(id="permission-dialog", classes=f"risk-{risk}"):
            yield Static(self._title(), id="permission-title", markup=False)
            # The orchestrator's words, each on its line: a newline in a name must not draw a line of its own.
            yield Static(f"agent      {printable(agent)}\n"
                         f"service    {printable(request.service_name)}   health: {self.service_health}\n"
                         f"operation  {printable(request.operation or '(whole service)')}\n"
                         f"risk       {printable(risk.upper() if risk == 'destructive' else risk)}\n"
                         f"reason     {printable(reason)}", id="permission-facts", markup=False)
            with VerticalScroll(id="permission-arguments"):
                yield Static(self._arguments(), id="permission-arguments-text", markup=False)
            yield Static("", id="permission-more", markup=False)
            yield Static(self._timing(), id="permission-timing", markup=False)
            if self.limits_note:
                yield Static(printable(self.limits_note), id="permission-limits", markup=False)
            yield Input(id="permission-input", disabled=True)  # enabled only while it is open
            yield Static(self._hint(), id="permission-hint", markup=False)
        yield KeysFooter()

    def on_mount(self) -> None:
        self._keys_from = time.monotonic() + self.guard_seconds
        self.query_one("#permission-input", Input).display = False
        self.set_interval(1.0, self._tick)
        self.watch(self.query_one("#permission-arguments", VerticalScroll), "scroll_y",
                   lambda _: self._show_what_is_below(), init=False)
        self.call_after_refresh(self._show_what_is_below)

    def _tick(self) -> None:
        self.query_one("#permission-timing", Static).update(self._timing())

    def _arguments(self) -> str:
        preview = self.request.params_preview
        if not preview:
            return "arguments  -"
        if not isinstance(preview, dict):
            return f"arguments  {json.dumps(preview)}"
        lines = json.dumps(preview, indent=2, sort_keys=True).splitlines()[1:-1]  # the fields, without the braces
        return "arguments\n" + "\n".join(lines)

    def _show_what_is_below(self) -> None:
        scroll = self.query_one("#permission-arguments", VerticalScroll)
        hidden = max(0, scroll.virtual_size.height - scroll.scroll_offset.y - scroll.size.height)
        full = shown_keys(self.app, self.keymap, FULL_REQUEST)
        self.query_one("#permission-more", Static).update(
            f"… {hidden} more line{'s' if hidden != 1 else ''} below (↓ scrolls, {full} shows the whole request)"
            if hidden else "")

    def on_queue_changed(self, message: QueueChanged) -> None:
        """Another request arrived (or left) while this one is open."""
        self.position, self.waiting = message.position, message.waiting
        self.query_one("#permission-title", Static).update(self._title())

    def _title(self) -> str:
        return f"Permission request  {self.position} of {self.waiting}"

    def _timing(self) -> str:
        now = self.clock()
        age = now - self.request.timestamp.timestamp() if self.request.timestamp else 0
        expiry = (f", expires in {describe_age(self.request.expires_at.timestamp() - now)}"
                  if self.request.expires_at else "")
        return f"asked {describe_age(age)} ago{expiry}"

    def _key(self, key: Key) -> str:
        return shown_keys(self.app, self.keymap, key)

    def _hint(self) -> str:
        if self.stage == "choose-limit":
            limits = (LIMIT_HOUR, LIMIT_EIGHT_HOURS, LIMIT_DAY, LIMIT_TYPED)
            return "time limit:  " + "   ".join(f"{self._key(k)} {k.description}" for k in limits) + \
                f"   {self._key(LATER)} back"
        if self.stage == "custom-limit":
            return f"type a duration (90m, 2h, 3d) and press enter; {self._key(LATER)} back"
        if self.stage == "deny-reason":
            return f"DENY: a reason for the agent (optional), enter to deny, {self._key(LATER)} back"
        if self.armed is not None:
            return (f"DESTRUCTIVE: press {self._key(CONFIRM_DESTRUCTIVE)} to approve "
                    f"({self._scope_text(self.armed)}), any other key cancels")
        scopes = [scope for scope in self.scopes if not (scope == "once" and self.time_limit is not None)]
        approve = "   ".join(f"{self._key(SCOPE_KEYS[scope])} {SCOPE_KEYS[scope].description}" for scope in scopes)
        limit = f"   {self._key(TIME_LIMIT)} time limit" if self.expiry and self.time_limit is None else ""
        prefix = f"for {describe_age(self.time_limit)}:  " if self.time_limit is not None else "approve:  "
        later = "back" if self.time_limit is not None else "later"
        return f"{prefix}{approve}{limit}   {self._key(DENY)} deny   {self._key(LATER)} {later}"

    def _scope_text(self, scope: Scope) -> str:
        limit = f" for {describe_age(self.time_limit)}" if self.time_limit else ""
        return f"{SCOPE_KEYS[scope].description}{limit}"

    def _show(self) -> None:
        self.query_one("#permission-hint", Static).update(self._hint())
        field = self.query_one("#permission-input", Input)
        field.display = self.stage in ("custom-limit", "deny-reason")
        field.disabled = not field.display
        if field.display:
            field.value = ""
            field.placeholder = "e.g. 2h" if self.stage == "custom-limit" else "reason (optional)"
            field.focus()
        self.refresh_bindings()

    # -- keys ---------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in STAGE_ACTIONS["keys"] | STAGE_ACTIONS["choose-limit"]:
            return True  # not the modal's own (the app's quit and help)
        if action not in STAGE_ACTIONS[self.stage]:
            return False
        if action == "confirm":
            return self.armed is not None
        if self.armed is not None:
            return action == "later"
        if action == "approve":
            scope = parameters[0] if parameters else None
            return scope in self.scopes and not (scope == "once" and self.time_limit is not None)
        if action == "time_limit":
            return self.expiry and self.time_limit is None
        return True

    def action_approve(self, scope: Scope) -> None:
        if self.destructive:
            self.armed = scope
            self._show()
            return
        self._approve(scope)

    def action_confirm(self) -> None:
        if self.armed is not None:
            self._approve(self.armed)

    def _approve(self, scope: Scope) -> None:
        self.dismiss(Decision(self.request.request_id, True, scope, None if scope == "once" else self.time_limit))

    def action_time_limit(self) -> None:
        self.stage = "choose-limit"
        self._show()

    def action_limit(self, seconds: float) -> None:
        self.time_limit, self.stage = seconds, "keys"
        self._show()

    def action_typed_limit(self) -> None:
        self.stage = "custom-limit"
        self._show()

    def action_deny(self) -> None:
        self.stage = "deny-reason"
        self._show()

    def action_full_request(self) -> None:
        self.app.push_screen(TextView(f"Permission request {self.request.request_id}", request_text(self.request)))

    def action_later(self) -> None:
        if self.stage != "keys" or self.armed is not None or self.time_limit is not None:
            self.stage, self.armed, self.time_limit = "keys", None, None  # esc steps back first
            self._show()
            return
        self.dismiss(None)

    def on_key(self, event: events.Key) -> None:
        if time.monotonic() < self._keys_from:  # typed before the request could be read
            event.stop()
            return
        # An armed destructive approval: any key but the confirming one cancels it.
        if self.armed is not None and event.key not in ("escape", *self.keymap.get(CONFIRM_DESTRUCTIVE.id,
                                                                                   CONFIRM_DESTRUCTIVE.keys).split(",")):
            event.stop()
            self.armed = None
            self._show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if self.stage == "deny-reason":
            if len(text) > MAX_REASON_CHARS:  # what the orchestrator takes: said here, the text kept to shorten
                self.query_one("#permission-hint", Static).update(
                    f"the reason is {len(text):,} characters, over {MAX_REASON_CHARS:,}: shorten it; "
                    f"{self._key(LATER)} back")
                return
            self.dismiss(Decision(self.request.request_id, False, reason=text or None))
            return
        try:
            limit = parse_duration(text)
            if limit > MAX_GRANT_SECONDS:
                raise UsageError(f"{text} is over ten years (for no limit, approve without "
                                 f"{self._key(TIME_LIMIT)})")
        except UsageError as exc:
            self.query_one("#permission-hint", Static).update(f"{exc}; {self._key(LATER)} back")
            return
        self.time_limit = limit
        self.stage = "keys"
        self._show()
        self.query_one("#permission-arguments", VerticalScroll).focus()
