"""Every key of the console, declared once: the footer, the help overlay and the config file's remapping
(`[console.keys]`, binding id → keys) all read these. Approve and deny keys exist only inside the
permission modal, so a stray keypress on any other screen decides nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from textual.app import App
from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class Key:
    id: str
    keys: str
    action: str
    description: str
    show: bool = True

    def binding(self) -> Binding:
        return Binding(self.keys, self.action, self.description, show=self.show, id=self.id)


def bindings(keys: tuple[Key, ...]) -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    """A BINDINGS list (typed as Textual declares it)."""
    return [key.binding() for key in keys]


def shown_keys(app: App[object], keymap: Mapping[str, str], key: Key) -> str:
    """The keys of `key` as the terminal shows them, remapped where the config file remaps its id."""
    return ", ".join(app.get_key_display(Binding(name, "")) for name in keymap.get(key.id, key.keys).split(","))


APP_KEYS = (  # in the footer after the screen's own keys, in this order: what matters most first
    Key("help", "question_mark", "help", "help"),
    Key("review", "r", "review_requests", "review pending"),
    Key("dashboard", "h", "show_screen('dashboard')", "dashboard"),
    Key("permissions", "p", "show_screen('permissions')", "permissions"),
    Key("operations", "c", "open_operations", "operations"),
    Key("audit", "u", "show_screen('audit')", "audit"),
    Key("quit", "q", "quit", "quit"),
)
TABLE_KEYS = (  # in every table with a cursor
    Key("choose", "enter", "choose", "open the row"),
    Key("row-up", "up", "move(-1)", "up", show=False),
    Key("row-down", "down", "move(1)", "down", show=False),
    Key("page-up", "pageup", "move(-10)", "page up", show=False),
    Key("page-down", "pagedown", "move(10)", "page down", show=False),
)
FILTER_KEYS = (Key("filter-clear", "escape", "close", "clear the filter"),)
DASHBOARD_KEYS = (
    Key("filter", "slash", "filter", "filter calls"),
    Key("agent-costs", "dollar_sign", "toggle_agent_costs", "cost by agent"),
)
PERMISSIONS_KEYS = (
    Key("revoke", "r", "revoke", "revoke grant"),
    Key("reload", "f5", "reload", "reload"),
)
OPERATIONS_KEYS = (
    Key("run", "ctrl+r", "run", "run operation"),
    Key("operation-list", "ctrl+o", "focus_operations", "operation list"),
    Key("previous-service", "left_square_bracket", "other_service(-1)", "previous service"),
    Key("next-service", "right_square_bracket", "other_service(1)", "next service"),
)
AUDIT_KEYS = (
    Key("audit-filter", "slash", "filter", "filter"),
    Key("audit-reload", "f5", "reload", "reload"),
)
APPROVE_ONCE = Key("approve-once", "a", "approve('once')", "this call")
APPROVE_SERVICE = Key("approve-service", "s", "approve('service')", "the service")
APPROVE_OPERATION = Key("approve-operation", "o", "approve('operation')", "the operation")
TIME_LIMIT = Key("time-limit", "t", "time_limit", "time limit")
DENY = Key("deny", "d", "deny", "deny")
LATER = Key("later", "escape", "later", "later")
FULL_REQUEST = Key("full-request", "f", "full_request", "whole request")
CONFIRM_DESTRUCTIVE = Key("confirm-destructive", "y", "confirm", "yes, approve")
LIMIT_HOUR = Key("limit-hour", "1", "limit(3600)", "one hour")
LIMIT_EIGHT_HOURS = Key("limit-eight-hours", "8", "limit(28800)", "eight hours")
LIMIT_DAY = Key("limit-day", "2", "limit(86400)", "a day")
LIMIT_TYPED = Key("limit-typed", "c", "typed_limit", "typed (90m, 2h)")
TEXT_VIEW_KEYS = (Key("close-view", "escape,f", "close", "close"),)
HELP_KEYS = (Key("close-help", "escape,question_mark", "close", "close"),)
PERMISSION_REQUEST_KEYS = (APPROVE_ONCE, APPROVE_SERVICE, APPROVE_OPERATION, TIME_LIMIT, DENY, LATER, FULL_REQUEST,
                           CONFIRM_DESTRUCTIVE, LIMIT_HOUR, LIMIT_EIGHT_HOURS, LIMIT_DAY, LIMIT_TYPED)

# A modal screen's bindings stop at the modal (Textual leaves the app's out): over the permission request, the
# app's help and quit are its own too, as the same bindings (a remapped id applies to both).
OVER_THE_REQUEST = tuple(replace(key, action=f"app.{key.action}") for key in APP_KEYS if key.id in ("help", "quit"))

SECTIONS: tuple[tuple[str, tuple[Key, ...]], ...] = (
    ("Everywhere", APP_KEYS),
    ("Dashboard", DASHBOARD_KEYS),
    ("Permissions screen", PERMISSIONS_KEYS),
    ("Operations screen", OPERATIONS_KEYS),
    ("Audit screen", AUDIT_KEYS),
    ("A permission request", PERMISSION_REQUEST_KEYS),
    ("A whole request or audit entry", TEXT_VIEW_KEYS),
    ("This help", HELP_KEYS),
    ("Tables", TABLE_KEYS),
    ("A filter line", FILTER_KEYS),
)
KNOWN_IDS = frozenset(key.id for _, keys in SECTIONS for key in keys)
