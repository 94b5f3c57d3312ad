"""Ledger and audit writes, batched off the request path and flushed on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Sequence

from gateway_core.store import AuditEvent, CallRecord, SQLiteStore
from gateway_core.store.records import ledger_text

log = logging.getLogger(__name__)

STORE_FAILURES = (sqlite3.OperationalError,)  # the store cannot write now (locked, full, read-only, I/O)


class Recorder:
    """Queues rows in memory and writes them in one transaction every `flush_interval` seconds (or sooner
    once `batch_size` rows wait).

    When the store cannot write (disk full, locked), the rows wait for the next try, in order, and
    `healthy` is False until a write succeeds. A row the store refuses for what it holds is set aside
    alone (counted, logged without its content): it never holds up the rows behind it."""

    def __init__(self, store: SQLiteStore, flush_interval: float = 0.05, batch_size: int = 1000) -> None:
        self._store = store
        self._flush_interval = flush_interval
        self._batch_size = batch_size
        self._calls: list[CallRecord] = []
        self._audit: list[AuditEvent] = []
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stopping = asyncio.Event()
        self._queued_since: float | None = None  # monotonic time the oldest waiting row was queued
        self.failing: str | None = None  # why the last write failed, until one succeeds
        self.set_aside = 0  # rows the store refused on their own

    @property
    def pending(self) -> int:
        return len(self._calls) + len(self._audit)

    @property
    def lag_seconds(self) -> float:
        """How long the oldest row still in memory has waited."""
        return 0.0 if self._queued_since is None else time.monotonic() - self._queued_since

    @property
    def healthy(self) -> bool:
        """Writing, and keeping up: False the moment a write fails or rows wait far longer than a flush."""
        return self.failing is None and self.lag_seconds < 2 * self._flush_interval + 5.0

    def record_call(self, record: CallRecord) -> None:
        if self._queued_since is None:
            self._queued_since = time.monotonic()
        self._calls.append(record)
        if len(self._calls) >= self._batch_size:
            self._wake.set()

    def record_audit(self, event: AuditEvent) -> None:
        """Queues a security event, written at once. What a caller sent is kept as bounded text."""
        if self._queued_since is None:
            self._queued_since = time.monotonic()
        self._audit.append(AuditEvent(event.ts, ledger_text(event.actor) or "unknown", ledger_text(event.action)
                                      or "unknown", ledger_text(event.subject), event.detail))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def aclose(self, deadline_seconds: float = 5.0) -> None:
        """Writes everything still queued, trying until `deadline_seconds` have passed; what could not be
        written by then is counted in the log. The writer is asked to stop, never cancelled mid-write."""
        self._closing = True
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        deadline = time.monotonic() + deadline_seconds
        while self.pending and time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self.flush()
            except (TimeoutError, *STORE_FAILURES):
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if self.pending:
            log.error("stopping: %d ledger and audit rows could not be written within %g s (%s)", self.pending,
                      deadline_seconds, self.failing or "the store did not answer")

    async def flush(self) -> None:
        """Writes until nothing is queued; returns only after any batch already being written is in."""
        async with self._flush_lock:
            while self._calls or self._audit:
                await self._write_queued()

    async def _write_batch(self) -> None:
        async with self._flush_lock:
            await self._write_queued()

    async def _write_queued(self) -> None:
        """Writes what is queued now, in one transaction (the caller holds the lock)."""
        calls, self._calls = self._calls, []
        audit, self._audit = self._audit, []
        try:
            await self._store.append(calls, audit)
        except STORE_FAILURES as exc:
            self._put_back(calls, audit, exc)
            raise
        except Exception:
            # The store refused what a row holds: write them one by one, and set aside only the bad ones.
            await self._write_one_by_one(calls, audit)
        self.failing = None
        self._queued_since = time.monotonic() if self.pending else None

    async def _write_one_by_one(self, calls: Sequence[CallRecord], audit: Sequence[AuditEvent]) -> None:
        rows: list[CallRecord | AuditEvent] = [*calls, *audit]
        for index, row in enumerate(rows):
            try:
                if isinstance(row, CallRecord):
                    await self._store.append([row])
                else:
                    await self._store.append((), [row])
            except STORE_FAILURES as exc:
                rest = rows[index:]
                self._put_back([r for r in rest if isinstance(r, CallRecord)],
                               [r for r in rest if isinstance(r, AuditEvent)], exc)
                raise
            except Exception as exc:
                self.set_aside += 1
                what = f"call {row.id}" if isinstance(row, CallRecord) else f"audit event {row.action}"
                log.error("ledger: %s set aside, the store refused it (%s); %d set aside so far", what,
                          type(exc).__name__, self.set_aside)

    def _put_back(self, calls: Sequence[CallRecord], audit: Sequence[AuditEvent], exc: Exception) -> None:
        """In front, in order, so nothing acknowledged is lost."""
        self._calls[:0] = calls
        self._audit[:0] = audit
        self.failing = f"{type(exc).__name__}: {exc}"[:200]

    async def _run(self) -> None:
        while not self._closing:
            # A failing store is retried on its own schedule, not at every audit event (no storm of retries).
            awaited = self._wake if self.failing is None else self._stopping
            interval = self._flush_interval if self.failing is None else max(self._flush_interval * 10, 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(awaited.wait(), interval)
            self._wake.clear()
            was_failing = self.failing
            try:
                # One batch per tick: rows recorded during the write wait for the next tick, so a busy
                # gateway makes a few large transactions rather than many small ones.
                await self._write_batch()
            except Exception:
                if was_failing is None:  # once per outage, not once per retry
                    log.exception("ledger write failed; %d rows kept for the next try", self.pending)
            else:
                if was_failing is not None:
                    log.warning("ledger writes work again after: %s", was_failing)
