"""The HTTP client handlers call their upstreams with: one pooled session per upstream.

aiohttp rather than httpx on this path: measured here, a keep-alive POST costs ~0.47 ms with aiohttp
and ~1.33 ms with httpx (bench/gateway_overhead.py), and this path is the gateway's own overhead. It is
imported on a worker thread before the first request (about 0.12 s, most of it building its TLS contexts):
neither the console's first frame nor the event loop waits for it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gateway_core import __version__
from gateway_core.lazy_import import import_in_thread
from gateway_core.redaction import shown_url

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

USER_AGENT = f"mcp-console/{__version__}"

# An idle pooled connection is dropped after this long, before the server drops it: uvicorn, Node and Apache
# close an idle keep-alive connection after 5 s, and a request sent on one at the moment the server closes it
# fails ("broke the connection", ServerDisconnectedError). aiohttp's own default keeps them 15 s, httpx's 5 s.
IDLE_CONNECTION_SECONDS = 4.0

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5

LimitsType = TypeVar("LimitsType")


def pooled_limits(limits_type: Callable[..., LimitsType]) -> LimitsType:
    """httpx's (or httpx2's) own pool limits, with idle connections dropped after IDLE_CONNECTION_SECONDS: for
    the clients of servers that are not ours (the existing orchestrator, MCP servers over HTTP)."""
    return limits_type(max_connections=100, max_keepalive_connections=20, keepalive_expiry=IDLE_CONNECTION_SECONDS)


_client_library_loaded = False


async def load_client_library() -> None:
    """Imports aiohttp on a worker thread, the first time: the gateway does so before its first health checks, so
    that their latency is the upstreams' own."""
    global _client_library_loaded
    if not _client_library_loaded:
        await import_in_thread("aiohttp")
        _client_library_loaded = True


class UpstreamTimeoutError(Exception):
    """The upstream did not answer within the client's timeout."""


class UpstreamConnectionError(Exception):
    """The upstream could not be reached; the message says why in an operator's words."""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class UpstreamClient:
    """Keep-alive connections to one base URL, its headers (credentials among them), one timeout for each
    request. Redirects are followed here, not by aiohttp: aiohttp takes only `Authorization` off a request
    redirected to another origin, and our vendors' keys travel in `X-API-Key` and `X-N8N-API-KEY` too. A
    redirect to another origin (GitHub's job logs in its blob storage) is followed by a session of its own,
    which sends no header of ours."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None, timeout_seconds: float = 30.0,
                 max_connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self.display_url = shown_url(self.base_url)
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._elsewhere: aiohttp.ClientSession | None = None  # for redirects to another origin: no headers of ours

    def _ensure_session(self) -> aiohttp.ClientSession:
        import aiohttp  # loaded by request() first: a look-up in sys.modules

        # Created on first use, inside the running loop that will use it.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300,
                                            keepalive_timeout=IDLE_CONNECTION_SECONDS)
            self._session = aiohttp.ClientSession(headers=self._headers, connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=self._timeout_seconds))
        return self._session

    def _session_for(self, url: URL) -> aiohttp.ClientSession:
        """Ours for the base URL's origin (scheme, host, port: what the credentials are for), a bare one else."""
        import aiohttp
        from yarl import URL

        base = URL(self.base_url)
        if (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port):
            return self._ensure_session()
        if self._elsewhere is None or self._elsewhere.closed:
            self._elsewhere = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}, connector=aiohttp.TCPConnector(
                keepalive_timeout=IDLE_CONNECTION_SECONDS), timeout=aiohttp.ClientTimeout(total=self._timeout_seconds))
        return self._elsewhere

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      json_body: Any = None, timeout_seconds: float | None = None) -> UpstreamResponse:
        await load_client_library()
        import aiohttp  # loaded just above, on a worker thread: a look-up in sys.modules

        url: str | URL = self.base_url + path
        session = self._ensure_session()
        timeout = session.timeout if timeout_seconds is None else aiohttp.ClientTimeout(total=timeout_seconds)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.request(method, url, params=params, json=json_body, timeout=timeout,
                                           allow_redirects=False) as response:
                    location = response.headers.get("Location") if response.status in REDIRECTS else None
                    if location is None:
                        return UpstreamResponse(response.status, response.headers, await response.read())
                url = _redirected(response.url, location, self.display_url)
                session = self._session_for(url)
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method, json_body = "GET", None  # as browsers and aiohttp do
                params = None  # the Location is the whole next URL
            raise UpstreamConnectionError(f"{self.display_url} redirected more than {MAX_REDIRECTS} times")
        except TimeoutError:
            raise UpstreamTimeoutError(f"no answer from {self.display_url} within {timeout.total:g} s") from None
        except aiohttp.ClientConnectorDNSError:
            host = self.display_url.split("://", 1)[-1].split("/", 1)[0]
            raise UpstreamConnectionError(f"cannot resolve {host}") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectionError(f"cannot connect to {self.display_url}: {exc.strerror or exc}") from None
        except aiohttp.ClientError as exc:
            raise UpstreamConnectionError(f"{self.display_url} broke the connection: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        for session in (self._session, self._elsewhere):
            if session is not None:
                await session.close()


def _redirected(at: URL, location: str, shown: str) -> URL:
    """Where a redirect's Location leads from `at`; a Location no URL can be made of is the upstream's fault."""
    from yarl import URL

    try:
        return at.join(URL(location))
    except ValueError:
        raise UpstreamConnectionError(f"{shown} redirected to a malformed address") from None
