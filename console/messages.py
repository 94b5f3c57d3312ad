"""The Textual messages the app and its screens exchange, instead of calling each other.

From the app to the screen on top: what changed in the console's state (the screen redraws what it
shows of it). From a screen (or the palette) to the app: what the operator asked for."""

from __future__ import annotations

from textual.message import Message

# -- the app tells the screen on top -------------------------------------------------------------------


class CallsArrived(Message):
    """New calls are in `state.calls`."""


class PendingChanged(Message):
    """The queue of requests waiting for a decision changed."""


class StatusChanged(Message):
    """A second passed, or the link or a service's health changed: services, usage and the link."""


class ToolsChanged(Message):
    """An MCP upstream listed other tools: the operations shown for it are out of date."""


class PermissionsChanged(Message):
    """A decision or a revocation was seen: the grants in force and the history are out of date."""


class QueueChanged(Message):
    """For the open permission modal: where its request stands in the queue now."""

    def __init__(self, position: int, waiting: int) -> None:
        super().__init__()
        self.position = position
        self.waiting = waiting


# -- a screen asks the app -------------------------------------------------------------------------------


class ReviewRequest(Message):
    """Open the permission modal for this pending request (`key`: its key in the pending queue)."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key


class OpenOperations(Message):
    """Show the Operations screen on `service` (None: the one it shows), with `operation`'s form open."""

    def __init__(self, service: str | None = None, operation: str | None = None) -> None:
        super().__init__()
        self.service = service
        self.operation = operation


class ShowScreen(Message):
    """Switch to the screen installed under `name` (dashboard, permissions, operations, audit)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class ShowCalls(Message):
    """Show the dashboard with its calls filtered by `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
