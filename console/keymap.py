"""Every key of the console, declared once: the footer, the help overlay and the config file's remapping
(`[console.keys]`, binding id → keys) all read these. Approve and deny keys exist only inside the
permission modal, so a stray keypress on any other screen decides nothing."""

from __future__ import annotations

from dataclasses import dataclass

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


APP_KEYS = (  # in the footer after the screen's own keys, in this order
    Key("help", "question_mark", "help", "help"),
    Key("dashboard", "h", "show_screen('dashboard')", "dashboard"),
    Key("permissions", "p", "show_screen('permissions')", "permissions"),
    Key("operations", "c", "open_operations", "operations"),
    Key("audit", "u", "show_screen('audit')", "audit"),
    Key("review", "r", "review_requests", "review pending"),
    Key("quit", "q", "quit", "quit"),
)
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
PERMISSION_REQUEST_KEYS = (
    Key("approve-once", "a", "approve('once')", "approve this call"),
    Key("approve-service", "s", "approve('service')", "approve the service"),
    Key("approve-operation", "o", "approve('operation')", "approve the operation"),
    Key("time-limit", "t", "time_limit", "time limit"),
    Key("deny", "d", "deny", "deny"),
    Key("later", "escape", "later", "later"),
)

SECTIONS: tuple[tuple[str, tuple[Key, ...]], ...] = (
    ("Everywhere", APP_KEYS),
    ("Dashboard", DASHBOARD_KEYS),
    ("Permissions screen", PERMISSIONS_KEYS),
    ("Operations screen", OPERATIONS_KEYS),
    ("Audit screen", AUDIT_KEYS),
    ("A permission request", PERMISSION_REQUEST_KEYS),
)
KNOWN_IDS = frozenset(key.id for _, keys in SECTIONS for key in keys)
