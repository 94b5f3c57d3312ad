"""The command palette (ctrl+p): screens, services, every service's operations (from their declarations)
and pending requests (found by "pending", "review", "approve" or "deny", and by agent and service), by name.
A chosen command is a message to the app, like any screen's request."""

from __future__ import annotations

from typing import Protocol, cast

from textual.command import Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher
from textual.message import Message

from console.formatting import literal
from console.messages import OpenOperations, ReviewRequest, ShowCalls, ShowScreen
from console.state import ConsoleState
from gateway_core.redaction import printable

SCREENS = {"dashboard": "services, calls and cost", "permissions": "pending requests, grants, decisions",
           "operations": "run any service's operations by hand", "audit": "who did what, when"}


class _HasState(Protocol):
    state: ConsoleState


class ConsoleCommands(Provider):
    def _commands(self) -> list[tuple[str, Message, str]]:
        state = cast(_HasState, self.app).state
        commands: list[tuple[str, Message, str]] = [
            (f"Go to {name}", ShowScreen(name), help_text) for name, help_text in SCREENS.items()]
        services = state.gateway.services() if state.gateway is not None else []
        commands += [(f"Service {service.name}: its calls on the dashboard", ShowCalls(service.name),
                      str(service.status))
                     for service in services]
        commands += [(f"Operation: {service.name} {operation.name}", OpenOperations(service.name, operation.name),
                      f"{operation.risk}: {operation.description}")
                     for service in services for operation in service.operations.values()]
        commands += [(f"Review the pending request: approve or deny "
                      f"{request.agent_name or state.agent_name(request.agent_id)} → "
                      f"{request.service_name}.{request.operation or '*'}", ReviewRequest(key),
                      request.risk or "")
                     for key, request in state.pending.items()]
        return commands

    # Ours come before Textual's own commands: the palette sorts by score, so ours score above theirs. The
    # palette reads a command's text and help as markup; agents' and MCP servers' names are text.
    async def discover(self) -> Hits:
        for text, message, help_text in self._commands():
            yield Hit(1.0, Content(printable(text)), lambda message=message: self.app.post_message(message),
                      text=printable(text), help=literal(printable(help_text)))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, message, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(0.5 + score / 2, highlighted(matcher, printable(text)),
                          lambda message=message: self.app.post_message(message), text=printable(text),
                          help=literal(printable(help_text)))


def highlighted(matcher: Matcher, text: str) -> Content:
    """`text` with the letters the query matched marked, as Matcher.highlight() marks them, taken as text where
    highlight() reads it as markup."""
    content = Content(text)
    _, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
