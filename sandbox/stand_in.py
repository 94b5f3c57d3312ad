"""What the vendor stand-ins (Coolify, GitHub, Cloudflare, n8n) share: a Starlette app that routes by path
template, keeps the latest requests, and checks every request to the vendor's API against the vendor's own
OpenAPI file (`sandbox/contract.py`), recording what the real API would refuse in `violations`.

A stand-in builds its contract at its first request (or when `build_contract` asks), not when it is made:
openapi-core and the vendor's file load on the thread that serves it, off the console's start-up path."""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.contract import VendorContract


@dataclass
class ReceivedRequest:
    method: str
    path: str  # below the API's prefix for API calls, else the whole path; as sent (percent-encoded)
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # names in lower case
    body: Any  # the JSON sent, else its bytes (None when empty)
    api: bool  # a call to the vendor's API (checked against its file), not a webhook or a download

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class Call:
    """A request as a route's handler gets it: with the template's placeholders, decoded."""

    request: ReceivedRequest
    params: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> Any:
        return self.request.body

    @property
    def query(self) -> dict[str, str]:
        return self.request.query


RouteHandler = Callable[[Call], Awaitable[Response]]
ContractSource = VendorContract | Callable[[], VendorContract] | None  # a contract, how to build one, or none


class StandIn:
    """Subclasses declare their routes with `route` and may refuse a request first in `gate` (a credential,
    a rate limit); `missing` answers a path no route takes, in the vendor's shape."""

    def __init__(self, contract: ContractSource, api_prefix: str = "", delay_seconds: float = 0.0) -> None:
        self._contract = contract
        self.api_prefix = api_prefix
        self.delay_seconds = delay_seconds
        self.requests: deque[ReceivedRequest] = deque(maxlen=5000)  # the latest: a sandbox runs for hours
        self.violations: list[str] = []
        self._routes: list[tuple[str, re.Pattern[str], RouteHandler, bool]] = []

    def route(self, method: str, template: str, *, api: bool = True) -> Callable[[RouteHandler], RouteHandler]:
        """Registers a handler for `method` on `template` (below the API's prefix when `api`); a placeholder
        `{name}` takes one path segment, `{name:path}` the rest of the path."""
        pattern = re.compile("^" + re.sub(r"\{(\w+)(:path)?\}",
                                          lambda match: f"(?P<{match[1]}>{'.+' if match[2] else '[^/]+'})",
                                          template) + "$")

        def register(handler: RouteHandler) -> RouteHandler:
            self._routes.append((method, pattern, handler, api))
            return handler

        return register

    @property
    def contract(self) -> VendorContract | None:
        """The vendor's contract, built the first time it is needed."""
        return self.build_contract()

    def build_contract(self) -> VendorContract | None:
        """Builds the contract now, if it is not built yet (the sandbox does so before it serves)."""
        if self._contract is not None and not isinstance(self._contract, VendorContract):
            self._contract = self._contract()
        return self._contract

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._endpoint,
                                       methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])])

    def requests_to(self, method: str, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def methods_for(self, path: str) -> list[str]:
        """The methods the API routes take on `path` (below the API's prefix)."""
        return [method for method, pattern, _, for_api in self._routes if for_api and pattern.match(path)]

    def problems(self, request: ReceivedRequest, pairs: list[tuple[str, str]], raw_body: bytes,
                 content_type: str | None) -> list[str]:
        """What the vendor's API would refuse about an API request, by its contract (none without one)."""
        contract = self.contract
        if contract is None:
            return []
        return contract.problems(request.method, request.path, pairs, request.headers, raw_body, content_type)

    async def gate(self, call: Call) -> Response | None:
        """A refusal before the route runs (an API call with a wrong credential, say); None lets it through."""
        return None

    def missing(self, call: Call) -> Response:
        return Response(status_code=404)

    async def _endpoint(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode().split("?", 1)[0]
        outside = any(not for_api and pattern.match(raw_path) for _, pattern, _, for_api in self._routes)
        api = not outside and (raw_path == self.api_prefix or raw_path.startswith(self.api_prefix + "/"))
        path = raw_path[len(self.api_prefix):] if api else raw_path
        raw_body = await request.body()
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = raw_body
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = ReceivedRequest(request.method, path, dict(pairs), headers, body, api)
        self.requests.append(received)
        if api:
            self.violations += self.problems(received, pairs, raw_body, request.headers.get("content-type"))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        for method, pattern, handler, for_api in self._routes:
            match = pattern.match(path) if for_api == api else None
            if match is not None and method == request.method:
                call = Call(received, {name: unquote(value) for name, value in match.groupdict().items()})
                return (await self.gate(call) if api else None) or await handler(call)
        call = Call(received)
        return (await self.gate(call) if api else None) or self.missing(call)
