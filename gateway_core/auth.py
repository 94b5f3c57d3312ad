"""Agents' and operators' credentials: bearer tokens, stored as HMAC-SHA256 under a server key that lives
beside the store. Agent tokens open the agent routes only, operator tokens the operator API only."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import uuid
from pathlib import Path

from gateway_core.errors import AuthenticationRequired
from gateway_core.periodic import Periodic
from gateway_core.store import Agent, AuditEvent, Operator, SQLiteStore, StoreError
from gateway_core.store.records import ledger_text

log = logging.getLogger(__name__)

TOKEN_PREFIX = "mcpa_"
OPERATOR_TOKEN_PREFIX = "mcpo_"
MAX_AGENT_ID_LENGTH = 128
AGENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
OPERATOR_PREFIX = "operator:"  # how an operator acting is recorded (`operator:alice`): no agent's id begins so


def key_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".key")


async def open_token_hasher(store: SQLiteStore) -> TokenHasher:
    """The hasher under the store's server key (`<db>.key`), created with the store. A key missing beside
    a store that issued tokens is refused: a new key would silently invalidate every one of them."""
    path = key_path_for(store.path)
    if not path.exists() and await store.has_credentials():
        raise StoreError(f"the server key {path} is missing, but the store {store.path.name} holds agents or "
                         "operators: with a new key every existing token would stop working. Restore the key "
                         "file (or move the store away to start afresh).")
    try:
        return TokenHasher(load_or_create_key(path))
    except OSError as exc:
        raise StoreError(f"cannot read the server key {path}: {exc.strerror or exc}") from None


def load_or_create_key(path: Path) -> bytes:
    """The server key: 32 random bytes in a 0600 file, created once (the first writer wins a race)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise StoreError(f"the server key {path} is damaged (shorter than 32 bytes)") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


class TokenHasher:
    """Hashes tokens with HMAC-SHA256: a stolen store alone does not let anyone check a guess."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def hash(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_agent(
    store: SQLiteStore, hasher: TokenHasher, name: str, actor: str, agent_id: str | None = None
) -> tuple[Agent, str]:
    """Creates an agent and returns it with its token: the only time the plain token exists. Its id is a UUID
    unless one is given (the external orchestrator accepts UUIDs only)."""
    agent_id = agent_id or str(uuid.uuid4())
    if not AGENT_ID_PATTERN.match(agent_id):
        raise ValueError("an agent id is 1-128 characters: letters, digits and _ . : @ -, starting alphanumeric")
    if agent_id.startswith(OPERATOR_PREFIX):  # its calls would be recorded, limited and budgeted as that operator's
        raise ValueError(f"an agent id cannot begin with {OPERATOR_PREFIX!r}: operators are recorded so")
    if not name.strip():
        raise ValueError("an agent needs a name")
    token = new_token()
    agent = await store.add_agent(agent_id, name.strip(), hasher.hash(token), actor)
    return agent, token


async def create_operator(store: SQLiteStore, hasher: TokenHasher, name: str, actor: str) -> tuple[Operator, str]:
    """Creates an operator (who may decide permissions on our orchestrator) and returns the only copy
    of its token."""
    if not name.strip():
        raise ValueError("an operator needs a name")
    token = OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    operator = await store.add_operator(f"operator_{uuid.uuid4().hex[:12]}", name.strip(), hasher.hash(token), actor)
    return operator, token


def claimed_id_for_the_record(claimed: str | None) -> str | None:
    """An X-Agent-Id as the audit log may keep it: bounded text, and never one of our tokens in clear (an
    agent that sends its token in the wrong header must not find it stored)."""
    if claimed is not None and claimed.startswith((TOKEN_PREFIX, OPERATOR_TOKEN_PREFIX)):
        return claimed[:len(TOKEN_PREFIX)] + "******** (a token, not kept)"
    return ledger_text(claimed, MAX_AGENT_ID_LENGTH)


class CredentialRefused(AuthenticationRequired):
    """-32003 with the reason kept apart, for the audit log."""

    def __init__(self, reason: str, claimed_agent_id: str | None) -> None:
        super().__init__(f"Authentication required: {reason}")
        self.reason = reason
        self.claimed_agent_id = claimed_id_for_the_record(claimed_agent_id)

    def audit_event(self, remote: str | None, ts: float) -> AuditEvent:
        return AuditEvent(
            ts=ts,
            actor=f"remote:{remote or 'unknown'}",
            action="auth.failed",
            subject=self.claimed_agent_id,
            detail={"reason": self.reason},
        )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for no header or another scheme."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class Authenticator:
    """Maps a bearer token to its agent or operator from an in-memory snapshot of those active, refreshed
    every `refresh_seconds`, so a token added or revoked by the CLI takes effect within that."""

    def __init__(
        self,
        store: SQLiteStore,
        hasher: TokenHasher,
        trust_agent_header: bool = False,
        refresh_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._trust_agent_header = trust_agent_header
        self._by_token_hash: dict[str, Agent] = {}
        self._by_id: dict[str, Agent] = {}
        self._operators_by_token_hash: dict[str, Operator] = {}
        self._refresher = Periodic(refresh_seconds, self.refresh, "auth-refresh")

    async def start(self) -> None:
        await self.refresh()
        if self._trust_agent_header:
            log.warning(
                "auth.trust_agent_header is on: an X-Agent-Id header without a token is trusted. "
                "Use this only on a private network whose agents cannot send tokens yet."
            )
        self._refresher.start()

    async def aclose(self) -> None:
        await self._refresher.stop()

    async def refresh(self) -> None:
        by_hash = await self._store.active_agents_by_token_hash()
        self._operators_by_token_hash = await self._store.active_operators_by_token_hash()
        self._by_token_hash = by_hash
        self._by_id = {agent.id: agent for agent in by_hash.values()}

    @property
    def active_agent_count(self) -> int:
        return len(self._by_id)

    def authenticate(self, authorization: str | None, agent_header: str | None) -> Agent:
        """The agent behind a request's credentials; CredentialRefused if there is none."""
        claimed = agent_header.strip() if agent_header else None
        if authorization:
            scheme, _, token = authorization.partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise CredentialRefused("the Authorization header must be 'Bearer <agent token>'", claimed)
            token_hash = self._hasher.hash(token)
            agent = self._by_token_hash.get(token_hash)
            if agent is None:
                if token_hash in self._operators_by_token_hash:
                    raise CredentialRefused("this is an operator token: agents need an agent token "
                                            "(operator tokens open the operator API only)", claimed)
                raise CredentialRefused("unknown or revoked agent token", claimed)
            if claimed is not None and claimed != agent.id:
                raise CredentialRefused("X-Agent-Id does not match the agent of this token", claimed)
            return agent
        if self._trust_agent_header and claimed:
            agent = self._by_id.get(claimed)
            if agent is not None:
                return agent
            raise CredentialRefused("unknown or revoked agent in X-Agent-Id", claimed)
        raise CredentialRefused("an agent token is required: send 'Authorization: Bearer <agent token>'", claimed)

    def operator(self, authorization: str | None) -> Operator:
        """The operator behind a request's bearer token; CredentialRefused for anything else (an agent's token)."""
        token = bearer_token(authorization)
        if token is None:
            raise CredentialRefused("an operator token is required: send 'Authorization: Bearer <operator token>'",
                                    None)
        token_hash = self._hasher.hash(token)
        operator = self._operators_by_token_hash.get(token_hash)
        if operator is None:
            if token_hash in self._by_token_hash:
                raise CredentialRefused("this is an agent token: the operator API needs an operator token "
                                        "(mcp-console operators add NAME)", None)
            raise CredentialRefused("unknown or revoked operator token", None)
        return operator

    def operator_in_force(self, operator_id: str) -> bool:
        return any(operator.id == operator_id for operator in self._operators_by_token_hash.values())
