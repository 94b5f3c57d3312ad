"""The store: agents, grants, the calls ledger and the audit log, behind one interface."""

from gateway_core.store.records import Agent, AuditEvent, CallRecord, Grant
from gateway_core.store.sqlite import SQLiteStore, StoreError

__all__ = ["Agent", "AuditEvent", "CallRecord", "Grant", "SQLiteStore", "StoreError"]
