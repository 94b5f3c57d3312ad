"""What goes wrong with an upstream's session, as the supervision sees it (the agent sees GatewayErrors)."""

from __future__ import annotations


class ConnectionLost(Exception):
    """The session ended under a call (the process died, the connection closed): the call may have run."""


class StartFailed(Exception):
    """The upstream could not be started or did not complete the handshake; the message says why, in words
    fit for the agent and the log (no argument, header or variable value)."""
