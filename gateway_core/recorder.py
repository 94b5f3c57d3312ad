"""Ledger and audit writes, batched off the request path and flushed on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway_core.store import AuditEvent, CallRecord, SQLiteStore

log = logging.getLogger(__name__)


class Recorder:
    """Queues rows in memory and writes them in one transaction every `flush_interval` seconds
    (or sooner once `batch_size` rows wait). A failed write keeps the rows for the next try."""

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

    @property
    def pending(self) -> int:
        return len(self._calls) + len(self._audit)

    def record_call(self, record: CallRecord) -> None:
        self._calls.append(record)
        if len(self._calls) >= self._batch_size:
            self._wake.set()

    def record_audit(self, event: AuditEvent) -> None:
        self._audit.append(event)
        self._wake.set()  # security events are written at once

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def aclose(self) -> None:
        """Writes everything still queued. The writer is asked to stop, never cancelled mid-write."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()

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
        except BaseException:
            # Put them back in front, in order, so nothing acknowledged is lost.
            self._calls[:0] = calls
            self._audit[:0] = audit
            raise

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            self._wake.clear()
            try:
                # One batch per tick: rows recorded during the write wait for the next tick, so a busy
                # gateway makes a few large transactions rather than many small ones.
                await self._write_batch()
            except Exception:
                log.exception("ledger write failed; %d rows kept for the next try", self.pending)
                if not self._closing:
                    await asyncio.sleep(self._flush_interval * 10)
