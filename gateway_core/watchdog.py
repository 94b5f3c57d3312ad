"""The last resort of a stopping process: once a stop has begun, the process is gone within a deadline,
whatever still hangs (a request that never ends, a terminal that no longer takes writes). A clean stop
finishes well inside it; the watchdog only ends one that cannot, and the log says so."""

from __future__ import annotations

import contextlib
import logging
import os
import threading

log = logging.getLogger(__name__)


class ExitWatchdog:
    def __init__(self, seconds: float, exit_code: int = 1) -> None:
        self.seconds = seconds
        self.exit_code = exit_code
        self._armed = threading.Event()
        self._lock = threading.Lock()

    @property
    def armed(self) -> bool:
        return self._armed.is_set()

    def arm(self, reason: str) -> None:
        """Starts the countdown (once; later calls do nothing). Safe from a signal handler or any thread."""
        with self._lock:
            if self._armed.is_set():
                return
            self._armed.set()
        threading.Thread(target=self._count_down, args=(reason,), name="exit-watchdog", daemon=True).start()

    def _count_down(self, reason: str) -> None:
        threading.Event().wait(self.seconds)
        log.error("stopping (%s) did not finish within %g s: exiting now", reason, self.seconds)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):  # a log that cannot be written must not keep us alive
                handler.flush()
        os._exit(self.exit_code)
