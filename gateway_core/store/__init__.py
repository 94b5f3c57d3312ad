"""The store: agents, grants, the calls ledger and the audit log, behind one interface."""

from gateway_core.store.records import Agent, AuditEvent, CallRecord, Grant, Operator, PermissionRequest, UsageTotals
from gateway_core.store.sqlite import AlreadyDecided, SQLiteStore, StoreError, UnknownPermissionRequest

__all__ = [
           "Agent",
           "AlreadyDecided",
           "AuditEvent",
           "CallRecord",
           "Grant",
           "Operator",
           "PermissionRequest",
           "SQLiteStore",
           "StoreError",
           "UnknownPermissionRequest",
           "UsageTotals",
]
