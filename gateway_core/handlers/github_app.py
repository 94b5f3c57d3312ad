"""A GitHub App's credentials for the github handler: its private key (repaired from what deployment UIs do
to PEM), the RS256 JWT it signs with it, and the installation token that JWT is exchanged for, each carried by
a pooled client and renewed before it expires. PyJWT and cryptography are imported on first use."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from gateway_core.clock import Clock
from gateway_core.errors import ServiceUnavailable
from gateway_core.upstream import UpstreamClient

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

TOKEN_RENEWAL_SECONDS = 300  # an installation token is renewed 5 minutes before it expires
JWT_BACKDATE_SECONDS = 60  # GitHub's advice: iat a minute early, for clock drift
JWT_LIFETIME_SECONDS = 540  # GitHub takes at most 10 minutes; 9 leave room for drift the other way
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)

# (the client carrying the JWT, the installation id) → the installation token and when it expires
Exchange = Callable[[UpstreamClient, str], Awaitable[tuple[str, float]]]


def repaired_pem(raw: str) -> str:
    """A private key as a deployment UI may have mangled it (quoted, `\\n` written out, newlines turned into
    spaces), back to PEM: PKCS#1 (`RSA PRIVATE KEY`) and PKCS#8 (`PRIVATE KEY`) alike."""
    text = raw.strip().strip("'\"").strip().replace("\\n", "\n")
    match = _PEM.search(text)
    if match is None:
        return text
    label, body = match[1], "".join(match[2].split())
    lines = [body[start:start + 64] for start in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])


class UnreadableKey(ServiceUnavailable):
    """GITHUB_PRIVATE_KEY cannot be read as a private key: a configuration problem."""


@dataclass(frozen=True, slots=True)
class AppCredentials:
    app_id: str
    private_key: str  # as configured; repaired and parsed on first use
    installation_id: str


class RotatingClient:
    """A pooled client carrying one short-lived credential, replaced by a new client when `renew` mints the next
    one (a pooled client's headers are fixed). A replaced client is closed at the following replacement, by when
    its last request has long ended."""

    def __init__(self, make_client: Callable[[str], UpstreamClient], clock: Clock, renew_before: float) -> None:
        self._make_client = make_client
        self._clock = clock
        self._renew_before = renew_before
        self._client: UpstreamClient | None = None
        self._expires_at = 0.0
        self._retired: list[UpstreamClient] = []
        self._lock = asyncio.Lock()

    def _due(self) -> bool:
        return self._client is None or self._clock() >= self._expires_at - self._renew_before

    async def client(self, renew: Callable[[], Awaitable[tuple[str, float]]], force: bool = False) -> UpstreamClient:
        if force:
            self._expires_at = 0.0
        if self._due():
            async with self._lock:
                if self._due():
                    secret, self._expires_at = await renew()
                    for retired in self._retired:
                        await retired.aclose()
                    self._retired = [self._client] if self._client is not None else []
                    self._client = self._make_client(secret)
        return cast(UpstreamClient, self._client)

    async def aclose(self) -> None:
        for client in (*self._retired, *([self._client] if self._client else [])):
            await client.aclose()


class GitHubApp:
    """The App's two credentials as pooled clients: the JWT (for the `/app` routes) and the installation token
    (for everything else), which `exchange` obtains with the JWT."""

    def __init__(self, credentials: AppCredentials, make_client: Callable[[str], UpstreamClient], clock: Clock,
                 exchange: Exchange) -> None:
        self.credentials = credentials
        self._clock = clock
        self._exchange = exchange
        self._key: PrivateKeyTypes | None = None
        self._jwt = RotatingClient(make_client, clock, JWT_BACKDATE_SECONDS)
        self._installation = RotatingClient(make_client, clock, TOKEN_RENEWAL_SECONDS)

    async def jwt_client(self) -> UpstreamClient:
        return await self._jwt.client(self._new_jwt)

    async def installation_client(self, renew: bool = False) -> UpstreamClient:
        """The installation token's client; `renew` when GitHub refused the token before its time."""
        return await self._installation.client(self._new_installation_token, force=renew)

    async def _new_installation_token(self) -> tuple[str, float]:
        return await self._exchange(await self.jwt_client(), self.credentials.installation_id)

    async def _new_jwt(self) -> tuple[str, float]:
        import jwt

        now = int(self._clock())
        expires = now + JWT_LIFETIME_SECONDS
        claims = {"iat": now - JWT_BACKDATE_SECONDS, "exp": expires, "iss": self.credentials.app_id}
        return jwt.encode(claims, cast(Any, self._signing_key()), algorithm="RS256"), float(expires)

    def _signing_key(self) -> PrivateKeyTypes:
        if self._key is None:
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            try:
                self._key = load_pem_private_key(repaired_pem(self.credentials.private_key).encode(), password=None)
            except (ValueError, TypeError):
                raise UnreadableKey("GITHUB_PRIVATE_KEY is not a readable private key (PEM, PKCS#1 or PKCS#8, "
                                    "without a passphrase)", {"service": "github"}) from None
        return self._key

    async def aclose(self) -> None:
        await self._installation.aclose()
        await self._jwt.aclose()
