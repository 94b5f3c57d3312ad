"""The orchestrator client: REST with short timeouts, and the /ws event feed with reconnects. The same code
talks to the team's external orchestrator and to ours."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx
import websockets
from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import connect

from gateway_core import __version__
from gateway_core.auth import OPERATOR_PREFIX
from gateway_core.orchestrator.models import (
    ACTING_OPERATOR_HEADER,
    WHOLE_SERVICE_ONLY,
    AgentPermissions,
    Decided,
    DecidedRequest,
    GrantList,
    GrantView,
    OrchestratorCapabilities,
    PendingPage,
    PermissionHistory,
    PermissionRequestBody,
    PermissionRequestEvent,
    PermissionRespondBody,
    PermissionResponseEvent,
    RequestFiled,
    parse_event,
)
from gateway_core.redaction import printable, redacted, shown_url
from gateway_core.upstream import pooled_limits

log = logging.getLogger(__name__)
Shape = TypeVar("Shape", bound=BaseModel)

LinkStatus = Literal["connecting", "connected", "reconnecting", "failed"]
PENDING_PAGE = 500  # pending requests asked for per page


class OrchestratorUnavailable(Exception):
    """The orchestrator could not be asked (down, slow, or it answered with an error)."""


class UnknownAgent(Exception):
    """The orchestrator does not know this agent, or does not accept its id (the external one takes UUIDs)."""

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(f"the orchestrator does not know agent {agent_id} ({reason})")
        self.agent_id = agent_id
        self.reason = reason


class UnknownRequest(Exception):
    """The orchestrator does not know this permission request (any more: the external one forgets on restart)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"the orchestrator does not know permission request {request_id}")
        self.request_id = request_id


class UnknownGrant(Exception):
    """Our orchestrator has no such grant in force (never made, revoked or expired already)."""

    def __init__(self, grant_id: str) -> None:
        super().__init__(f"no grant {grant_id} is in force: revoked or expired already, or never made")


class DecisionConflict(Exception):
    """The request was decided before (409): `first` is the decision that stands."""

    def __init__(self, first: dict[str, Any]) -> None:
        super().__init__(str(first.get("detail", "already decided")))
        self.first = first


class RouteMissing(Exception):
    """The orchestrator has no such route (the external one has only three)."""


@dataclass(frozen=True, slots=True)
class LinkState:
    """The feed's state; `retry_in` is set while reconnecting, `reason` when something went wrong."""

    status: LinkStatus
    retry_in: float | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.status == "reconnecting":
            return f"reconnecting in {self.retry_in:.0f} s ({self.reason})"
        if self.status == "failed":
            return f"failed: {self.reason}"
        return self.status


class OrchestratorClient:
    def __init__(self, base_url: str, token: str | None = None, timeout_seconds: float = 3.0,
                 max_backoff_seconds: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.display_url = shown_url(self.base_url)
        headers = {"User-Agent": f"mcp-console/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_seconds,
                                       limits=pooled_limits(httpx.Limits))
        self._max_backoff = max_backoff_seconds
        self.has_pending_list: bool | None = None  # learnt on first use: the external orchestrator has none
        # Requests yielded, by id, service and operation (one id may name two requests: see _first_sight).
        self._seen_requests: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
                    params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            return await self._http.request(method, path, json=body, params=params, headers=headers)
        except httpx.TimeoutException:
            raise OrchestratorUnavailable(f"the orchestrator at {self.display_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise OrchestratorUnavailable(f"cannot reach the orchestrator at {self.display_url}: "
                                          f"{type(exc).__name__}") from None

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise OrchestratorUnavailable(f"the orchestrator answered {response.status_code} without JSON") from None

    @staticmethod
    def _detail(response: httpx.Response) -> str | None:
        try:
            payload = response.json()
        except ValueError:
            return None
        return str(payload.get("detail")) if isinstance(payload, dict) and "detail" in payload else None

    def _not_found(self, response: httpx.Response) -> str | None:
        """The detail of a "not found" answer: a 404 naming what is missing, or the external orchestrator's way of
        saying it, a 500 whose detail is its 404 wrapped ("404: Agent ... not found")."""
        detail = self._detail(response) or ""
        if response.status_code == 404 and detail not in ("", "Not Found"):
            return detail
        if response.status_code == 500 and detail.startswith("404:"):
            return detail.removeprefix("404:").strip()
        return None

    def _refuse_unknown_agent(self, response: httpx.Response, agent_id: str) -> None:
        missing = self._not_found(response)
        if missing is not None and missing.startswith("Agent "):
            raise UnknownAgent(agent_id, "it has no such agent")
        if response.status_code == 400 and self._detail(response) == "Invalid agent ID format":
            raise UnknownAgent(agent_id, "it takes UUID agent ids only")

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code in (404, 405) and self._detail(response) in (None, "Not Found",
                                                                             "Method Not Allowed"):
            raise RouteMissing(response.request.url.path)
        if response.status_code in (401, 403):
            raise OrchestratorUnavailable("the orchestrator refused our operator token")
        if response.status_code >= 400:
            raise OrchestratorUnavailable(f"the orchestrator answered {response.status_code}: "
                                          f"{(self._detail(response) or '')[:200]}")
        return self._json(response)

    # -- REST -----------------------------------------------------------------------------------------

    async def get_permissions(self, agent_id: str) -> AgentPermissions:
        response = await self._call("GET", f"/api/agent/{agent_id}/mcp-permissions")
        self._refuse_unknown_agent(response, agent_id)
        return self._validated(AgentPermissions, self._check(response))

    async def request_permission(self, body: PermissionRequestBody) -> str:
        response = await self._call("POST", "/api/mcp/permission-request", body.model_dump(exclude_none=True))
        self._refuse_unknown_agent(response, body.agent_id)
        return self._validated(RequestFiled, self._check(response)).request_id

    async def respond(self, body: PermissionRespondBody) -> Decided:
        """Decides a request. Ours records who decided from the token, so with the gateway's internal token a
        `decided_by` of `operator:<login>` goes as the acting-operator header (any other token: ignored)."""
        acting = body.decided_by if body.decided_by and body.decided_by.startswith(OPERATOR_PREFIX) else None
        response = await self._call("POST", "/api/mcp/permission-respond", body.model_dump(exclude_none=True),
                                    headers={ACTING_OPERATOR_HEADER: acting} if acting else None)
        if response.status_code == 409:
            raise DecisionConflict(self._json(response))
        if self._not_found(response) is not None:
            raise UnknownRequest(body.request_id)
        return self._validated(Decided, self._check(response))

    async def capabilities(self) -> OrchestratorCapabilities:
        """What this orchestrator can grant and list; one without the route (the external one) grants whole
        services only, forever, and lists nothing."""
        try:
            capabilities = self._validated(OrchestratorCapabilities,
                                           await self.ours_only("GET", "/api/mcp/capabilities"))
        except RouteMissing:
            capabilities = WHOLE_SERVICE_ONLY
        self.has_pending_list = capabilities.pending_list
        return capabilities

    async def list_pending(self) -> list[PermissionRequestEvent] | None:
        """Every pending request, oldest first (page after page), or None when this orchestrator cannot list
        them (the external one)."""
        if self.has_pending_list is False:
            return None
        pending: list[PermissionRequestEvent] = []
        params: dict[str, Any] = {"status": "pending", "limit": PENDING_PAGE}
        while True:
            try:
                payload = self._check(await self._call("GET", "/api/mcp/permission-requests", params=params))
            except RouteMissing:
                self.has_pending_list = False
                return None
            self.has_pending_list = True
            page = self._validated(PendingPage, payload)
            pending += page.requests
            if page.next_cursor is None:
                return pending
            params["cursor"] = page.next_cursor

    async def ours_only(self, method: str, path: str, **kwargs: Any) -> Any:
        """A route only our orchestrator has; RouteMissing against the external one."""
        return self._check(await self._call(method, path, **kwargs))

    async def list_grants(self) -> list[GrantView]:
        """Every agent's active grants (ours only: RouteMissing elsewhere)."""
        return self._validated(GrantList, await self.ours_only("GET", "/api/mcp/grants")).grants

    async def permission_history(self, limit: int = 200) -> list[DecidedRequest]:
        """Decided and expired requests, newest first (ours only: RouteMissing elsewhere)."""
        payload = await self.ours_only("GET", "/api/mcp/permission-history", params={"limit": limit})
        return self._validated(PermissionHistory, payload).history

    async def revoke_grant(self, grant_id: str, acting_operator: str | None = None, spent: bool = False) -> None:
        """`acting_operator` (`operator:<login>`) is who the audit names when we hold the internal token;
        `spent`: a one-time approval used by its call (audited as grant.used)."""
        headers = {ACTING_OPERATOR_HEADER: acting_operator} if acting_operator else None
        response = await self._call("DELETE", f"/api/mcp/grants/{grant_id}", headers=headers,
                                    params={"spent": "true"} if spent else None)
        if self._not_found(response) is not None:  # an answer, not an orchestrator that cannot be reached
            raise UnknownGrant(grant_id)
        self._check(response)

    @staticmethod
    def _validated(model: type[Shape], payload: Any) -> Shape:
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise OrchestratorUnavailable(f"the orchestrator's answer does not fit {model.__name__}: "
                                          f"{exc.error_count()} problem(s)") from None

    # -- the feed -------------------------------------------------------------------------------------

    def _first_sight(self, request: PermissionRequestEvent) -> bool:
        """True the first time a request is seen. The external orchestrator names requests by the second and
        agent, so the same id may name requests for two operations: those are two requests."""
        key = (request.request_id, request.service_name, request.operation or "")
        if key in self._seen_requests:
            return False
        self._seen_requests[key] = None
        if len(self._seen_requests) > 10_000:
            self._seen_requests.popitem(last=False)
        return True

    async def events(self) -> AsyncIterator[LinkState | Any]:
        """Link states and orchestrator events, forever: reconnects with capped, jittered backoff; after
        every (re)connect lists pending requests where it can; yields each request once."""
        ws_url = "ws" + self.base_url[len("http"):] + "/ws"
        attempt = 0
        yield LinkState("connecting")
        while True:
            try:
                async with connect(ws_url, additional_headers=self._headers, open_timeout=5,
                                   ping_interval=20, ping_timeout=20, max_size=1 << 20) as socket:
                    attempt = 0
                    yield LinkState("connected")
                    try:
                        for missed in await self.list_pending() or []:
                            if self._first_sight(missed):
                                yield missed
                    except OrchestratorUnavailable as exc:
                        log.warning("could not list pending requests after connecting: %s", exc)
                    async for frame in socket:
                        event = parse_event(frame)
                        if event is None:
                            continue
                        if isinstance(event, PermissionRequestEvent) and not self._first_sight(event):
                            continue
                        if isinstance(event, PermissionResponseEvent):
                            # Settled: the external orchestrator may give its id to the next request in that second.
                            for key in [key for key in self._seen_requests if key[0] == event.request_id]:
                                del self._seen_requests[key]
                        yield event
                reason = "the orchestrator closed the connection"
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
                reason = describe_stream_failure(exc)
                if isinstance(exc, websockets.exceptions.InvalidStatus) and exc.response.status_code in (401, 403):
                    reason += ": set ORCHESTRATOR_TOKEN to an operator token it takes"
            attempt += 1
            delay = min(self._max_backoff, 0.1 * 2 ** min(attempt - 1, 12)) * random.uniform(0.5, 1.0)
            yield LinkState("reconnecting", round(delay, 1), reason)
            await asyncio.sleep(delay)
            yield LinkState("connecting")


def describe_stream_failure(exc: BaseException, refused: str = "the orchestrator refused the feed") -> str:
    """Why a WebSocket feed broke, in a few words for a header or a log; `refused` names who said no."""
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return f"{refused} (HTTP {exc.response.status_code})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:200]


def params_preview(arguments: dict[str, Any], limit: int = 200) -> dict[str, Any]:
    """Arguments for an operator's eyes: secrets masked (gateway_core.redaction), long values cut, names and
    text printable() (an orchestrator's screen may not write out an escape sequence as ours do)."""
    preview: dict[str, Any] = {}
    for key, value in redacted(arguments).items():
        if isinstance(value, str):
            value = printable(value)
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        preview[printable(key)] = value if len(text) <= limit else text[:limit] + "…"
    return preview
