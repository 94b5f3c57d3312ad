"""How the gateway and the console write their logs: one line format, and no line holding what a terminal
showing the log (tail -f, journalctl) would act on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TextIO

from gateway_core.redaction import printable

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The SDK's transport logs "Terminating session: None" at INFO for every stateless request it serves: three
# lines in four of a serving gateway's log. Its warnings still come.
QUIETED = {"mcp.server.streamable_http": logging.WARNING}


class _PrintableFormatter(logging.Formatter):
    """A line's message printable(): what it quotes (an upstream's error, an MCP server's stderr, a name) can
    neither act on the terminal nor start a line of its own. A traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def configure_logging(level: int, *, stream: TextIO | None = None, file: Path | None = None) -> None:
    """The root logger at `level`, writing LINE_FORMAT lines to `file` (appended), else to `stream`."""
    handler = logging.FileHandler(file) if file is not None else logging.StreamHandler(stream)
    handler.setFormatter(_PrintableFormatter(LINE_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    for name, quiet_level in QUIETED.items():
        logging.getLogger(name).setLevel(max(level, quiet_level))
