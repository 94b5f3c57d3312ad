"""The command palette (ctrl+p): screens, services, Coolify operations and pending requests, by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.screens.coolify import OPERATIONS

if TYPE_CHECKING:
    from console.app import ConsoleApp

SCREENS = {"dashboard": "services, calls and cost", "permissions": "pending requests, grants, decisions",
           "coolify": "run Coolify operations by hand", "audit": "who did what, when"}


class ConsoleCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: ConsoleApp = self.app  # type: ignore[assignment]
        commands: list[tuple[str, Callable[[], Any], str]] = [
            (f"Go to {name}", partial(app.action_show_screen, name), help_text) for name, help_text in SCREENS.items()
        ]
        if app.runtime is not None:
            commands += [(f"Service {name}: its calls on the dashboard", partial(app.show_service, name),
                          app.runtime.gateway.service_status(name)) for name in app.runtime.gateway.catalog.names()]
        commands += [(f"Coolify: {operation.name}", partial(app.show_coolify_operation, operation.name),
                      f"{operation.risk}: {operation.description}") for operation in OPERATIONS.values()]
        commands += [(f"Decide: {request.agent_name or request.agent_id} → {request.service_name}."
                      f"{request.operation or '*'}", partial(app.review, request_id), request.risk or "")
                     for request_id, request in app.pending.items()]
        return commands

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands():
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
