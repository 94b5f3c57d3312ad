"""mem0: agents' memory, through the upstream's own FastAPI wrapper around `mem0ai` (MEM0_API_FLAVOR=ozean, the
default) or the stock mem0 server (`mem0`), shared/spec/services.md, mem0.

Every operation is declared once with the route it takes on each flavor (none: that server cannot do it, -32002)
and how the answer becomes `data`. mem0ai's values are unwrapped wherever the servers nest them (`results`,
`results.results`, `memory_id.results[0].id`); the text is in `memory`. A call that names no `user_id` is scoped
to the calling agent. Memory text is never put into an error or a log."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self, cast

from pydantic import Field

from gateway_core.clock import Clock, system_clock
from gateway_core.config import Settings
from gateway_core.errors import (
    InvalidParams,
    OperationNotSupported,
    RateLimitExceeded,
    ResourceNotFound,
    ServiceUnavailable,
    UpstreamTimeout,
    ValidationFailed,
)
from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.caller import calling_agent
from gateway_core.handlers.rest import fill_path, json_of
from gateway_core.health import HealthReport
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable, Picker, Target
from gateway_core.upstream import UpstreamClient, UpstreamConnectionError, UpstreamResponse, UpstreamTimeoutError

Flavor = Literal["ozean", "mem0"]
KEY_REFUSED = "mem0 refused the API key: check MEM0_API_KEY"

# -- argument models ---------------------------------------------------------------------------------

USER_ID = Field(None, min_length=1, max_length=200, description="whose memories (default: the calling agent)")
MEMORY_ID = Field(min_length=1, max_length=200, description="the memory's id")


class RememberArgs(OperationArgs):
    content: str = Field(min_length=1, max_length=100_000, description="what to remember")
    user_id: str | None = USER_ID
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchArgs(OperationArgs):
    query: str = Field(min_length=1, max_length=10_000)
    user_id: str | None = USER_ID
    limit: int = Field(10, ge=1, le=100)
    threshold: float = Field(0.7, ge=0, le=1, description="the least relevance (score) returned")


class UserArgs(OperationArgs):
    user_id: str | None = USER_ID


class ListArgs(OperationArgs):
    user_id: str | None = USER_ID
    offset: int = Field(0, ge=0)
    limit: int = Field(100, ge=1, le=1000)


class MemoryArgs(OperationArgs):
    memory_id: str = MEMORY_ID


class UpdateArgs(OperationArgs):
    memory_id: str = MEMORY_ID
    content: str = Field(min_length=1, max_length=100_000)


# -- the declarations --------------------------------------------------------------------------------

Body = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Mem0Route:
    """A call on one flavor's server: `{name}` in the path is filled from the arguments; `body` builds the JSON
    body and `query` the query string from them."""

    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    body: Body | None = None
    query: Callable[[Mapping[str, Any]], dict[str, str]] | None = None


@dataclass(frozen=True, slots=True)
class Mem0Operation(Operation):
    routes: Mapping[Flavor, Mem0Route] = field(default_factory=dict)  # none at all: the health check answers
    reported_as: str = ""  # `data.operation`, the upstream's name for it


# The call's time among its values, for what a route's body stamps (a remembered memory's `timestamp`).
CALLED_AT = "_called_at"


def _remembered_metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    return {**values["metadata"], "source": "mcp-gateway", "timestamp": values[CALLED_AT]}


def _records(answer: Any) -> list[dict[str, Any]]:
    """mem0ai's memory objects, however the server wrapped them: a list, or under `results` or `memories`, once
    or twice."""
    for _ in range(3):
        if isinstance(answer, dict):
            answer = next((answer[key] for key in ("results", "memories") if key in answer), None)
        if isinstance(answer, list):
            return [record for record in answer if isinstance(record, dict)]
    return []


def _memory_id(answer: Any) -> str | None:
    """The id of what was added: `memory_id` (a string, or mem0ai's `{results: [{id}]}`), else the first result."""
    if isinstance(answer, dict) and isinstance(answer.get("memory_id"), str | int):
        return str(answer["memory_id"])
    records = _records(answer.get("memory_id") if isinstance(answer, dict) and "memory_id" in answer else answer)
    return str(records[0]["id"]) if records and "id" in records[0] else None


def _text(record: Mapping[str, Any]) -> str:
    return str(record.get("memory") or record.get("content") or record.get("text") or "")


def _remembered(values: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    return {"memory": {"id": _memory_id(answer), "user_id": values["user_id"], "content": values["content"],
                       "metadata": values["metadata"]}, "message": "Memory stored"}


def _found(values: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    results = [{"id": record.get("id"), "content": _text(record), "relevance": record.get("score"),
                "metadata": record.get("metadata") or {}} for record in _records(answer)
               if record.get("score") is None or float(record["score"]) >= values["threshold"]][: values["limit"]]
    return {"query": values["query"], "resultCount": len(results), "results": results}


def _context(values: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    memories = [{"id": record.get("id"), "content": _text(record), "metadata": record.get("metadata") or {},
                 "created_at": record.get("created_at"), "updated_at": record.get("updated_at")}
                for record in _records(answer)][:50]
    return {"user_id": values["user_id"], "memoryCount": len(memories), "memories": memories}


def _page(values: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    records = _records(answer)
    offset, limit = values["offset"], values["limit"]
    memories = [{"id": record.get("id"), "user_id": record.get("user_id", values["user_id"]),
                 "content": _text(record)[:100] + ("..." if len(_text(record)) > 100 else ""),
                 "metadata": record.get("metadata") or {}, "created_at": record.get("created_at")}
                for record in records[offset: offset + limit]]
    return {"total": len(records), "limit": limit, "offset": offset, "memories": memories}


def _deleted(values: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    said = answer if isinstance(answer, dict) else {}
    return {"memory_id": values["memory_id"], "message": said.get("message", "Memory deleted"),
            "status": said.get("status", "deleted")}


def _updated(values: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    said = answer if isinstance(answer, dict) else {}
    return {"memory_id": values["memory_id"], "content": values["content"],
            "message": said.get("message", "Memory updated"), "metadata": said.get("metadata") or {}}


def _as_object(key: str) -> Callable[[Mapping[str, Any], Any], dict[str, Any]]:
    return lambda values, answer: {key: answer}


_MEMORY = {"memory_id": Picker("list", "memories", value="id", label="content")}
_USER_QUERY = {"query": lambda values: {"user_id": values["user_id"]}}

MEM0_OPERATIONS: tuple[Mem0Operation, ...] = (
    Mem0Operation("remember", RememberArgs, "write", "Keep a memory", tokens=150, aliases=("add", "store"),
                  slash_rest="text", reported_as="memory_added", shape=_remembered, routes={
                      "ozean": Mem0Route("POST", "/memory/add", lambda v: {
                          "user_id": v["user_id"], "content": v["content"], "metadata": _remembered_metadata(v)}),
                      "mem0": Mem0Route("POST", "/memories", lambda v: {
                          "messages": [{"role": "user", "content": v["content"]}], "user_id": v["user_id"],
                          "metadata": _remembered_metadata(v)})}),
    Mem0Operation("search", SearchArgs, "read", "Memories relevant to a query, most relevant first", tokens=200,
                  aliases=("query",), slash_rest="text", reported_as="memory_search", shape=_found, routes={
                      "ozean": Mem0Route("POST", "/memory/search", lambda v: {
                          "query": v["query"], "user_id": v["user_id"], "limit": v["limit"],
                          "threshold": v["threshold"]}),
                      "mem0": Mem0Route("POST", "/search", lambda v: {"query": v["query"], "user_id": v["user_id"]})}),
    Mem0Operation("get-context", UserArgs, "read", "A user's memories (50 at most)", tokens=250,
                  aliases=("get-memories",), reported_as="get_memories", shape=_context, routes={
                      "ozean": Mem0Route("GET", "/memory/get/{user_id}"),
                      "mem0": Mem0Route("GET", "/memories", **_USER_QUERY)}),
    Mem0Operation("delete", MemoryArgs, "destructive", "Forget one memory", tokens=100,
                  aliases=("remove", "delete-memory"), target=Target("memory", "memory_id"), pickers=_MEMORY,
                  reported_as="memory_deleted", shape=_deleted, routes={
                      "ozean": Mem0Route("DELETE", "/memory/delete/{memory_id}"),
                      "mem0": Mem0Route("DELETE", "/memories/{memory_id}")}),
    Mem0Operation("update", UpdateArgs, "write", "Change a memory's text (the stock mem0 server only)", tokens=150,
                  target=Target("memory", "memory_id"), pickers=_MEMORY, reported_as="memory_updated",
                  shape=_updated, routes={"mem0": Mem0Route("PUT", "/memories/{memory_id}",
                                                            lambda v: {"text": v["content"]})}),
    Mem0Operation("list", ListArgs, "read", "A user's memories, a page at a time (text cut to 100 characters)",
                  tokens=300, aliases=("list-all", "list-memories"), reported_as="list_memories", shape=_page,
                  routes={"ozean": Mem0Route("GET", "/memory/get/{user_id}"),
                          "mem0": Mem0Route("GET", "/memories", **_USER_QUERY)}),
    Mem0Operation("health", NoArgs, "read", "Is the memory server up, and does it take our key?", tokens=50,
                  aliases=("test",), reported_as="health"),
    Mem0Operation("stats", NoArgs, "read", "The memory server's counts", reported_as="memory_stats",
                  shape=_as_object("stats"), routes={"ozean": Mem0Route("GET", "/memory/stats")}),
    Mem0Operation("memory-history", MemoryArgs, "read", "How a memory changed (the stock mem0 server only)",
                  target=Target("memory", "memory_id"), pickers=_MEMORY, reported_as="memory_history",
                  shape=_as_object("history"), routes={"mem0": Mem0Route("GET", "/memories/{memory_id}/history")}),
)

HEALTH_ROUTES: Mapping[Flavor, str] = {"ozean": "/health", "mem0": "/docs"}  # the stock server has no /health


class Mem0Handler(ServiceHandler):
    service = "mem0"
    operations = OperationTable(MEM0_OPERATIONS)

    def __init__(self, api_url: str, api_key: str | None = None, flavor: Flavor = "ozean",
                 timeout_seconds: float = 30.0, clock: Clock = system_clock) -> None:
        headers = {"Accept": "application/json", **({"X-API-Key": api_key} if api_key else {})}
        self._client = UpstreamClient(api_url.strip().rstrip("/"), headers, timeout_seconds)
        self._flavor = flavor
        self._clock = clock
        self._backend: str | None = None  # what the server last said it stores memories in

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        return cls(settings.setting("MEM0_API_URL") or "", settings.setting("MEM0_API_KEY"), settings.mem0_api_flavor,
                   settings.http_timeout_ms / 1000, clock)

    async def aclose(self) -> None:
        await self._client.aclose()

    def needs_no_grant(self, caller: str, operation: Operation, args: OperationArgs) -> bool:
        """The caller's own memories, short of deleting them: a call naming no user or the caller itself, or
        naming no one (health, stats). A call naming another agent's user, or a memory by its id (whose it is
        only the server knows), or deleting, is asked for like any service's."""
        if operation.risk == "destructive" or "memory_id" in type(args).model_fields:
            return False
        return getattr(args, "user_id", None) in (None, caller)

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        declared = cast(Mem0Operation, operation)  # this handler's table holds only Mem0Operations
        values = args.model_dump()
        values[CALLED_AT] = datetime.datetime.fromtimestamp(self._clock(), datetime.UTC).isoformat(
            timespec="milliseconds")
        if not declared.routes:
            return await self._health_result()
        route = declared.routes.get(self._flavor)
        if route is None:
            raise OperationNotSupported(f"mem0: this memory server ({self._flavor}) cannot {declared.name}",
                                        {"service": "mem0", "operation": declared.name, "flavor": self._flavor})
        if "user_id" in values:
            values["user_id"] = values["user_id"] or calling_agent()
            if not values["user_id"]:
                raise InvalidParams("Invalid arguments: user_id: required when the caller is not known",
                                    {"errors": [{"field": "user_id", "message": "required", "type": "missing"}]})
        path = fill_path(route.path, values)
        response = await self._request(route.method, path, route.body(values) if route.body else None,
                                       route.query(values) if route.query else None)
        _raise_for_status(response, values)
        answer = json_of(response, "mem0", "MEM0_API_URL")
        data: dict[str, Any] = {"operation": declared.reported_as}
        data.update(declared.shape(values, answer) if declared.shape else {})
        return data

    async def _request(self, method: str, path: str, body: Any, query: dict[str, str] | None) -> UpstreamResponse:
        try:
            return await self._client.request(method, path, json_body=body, params=query)
        except UpstreamTimeoutError as exc:
            raise UpstreamTimeout(f"mem0: {exc}", {"service": "mem0"}) from None
        except UpstreamConnectionError as exc:
            raise ServiceUnavailable(f"mem0 unreachable: {exc}: check MEM0_API_URL", {"service": "mem0"}) from None

    # -- health -------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        started = time.perf_counter()
        try:
            response = await self._client.request("GET", HEALTH_ROUTES[self._flavor])
        except (UpstreamConnectionError, UpstreamTimeoutError) as exc:
            return HealthReport("down", None, f"{exc}: check MEM0_API_URL")
        latency = round((time.perf_counter() - started) * 1000, 3)
        if response.status in (401, 403):
            return HealthReport("degraded", latency, KEY_REFUSED)
        if response.status != 200:
            return HealthReport("down", latency, f"{HEALTH_ROUTES[self._flavor]} answered {response.status}")
        said = _json_object(response)
        if said.get("status", "healthy") != "healthy":
            return HealthReport("degraded", latency, f"mem0 says it is {said.get('status')}")
        self._backend = said.get("backend")
        return HealthReport("healthy", latency, f"mem0 ({self._flavor}) answers" + (
            f", backend {self._backend}" if self._backend else ""))

    async def _health_result(self) -> dict[str, Any]:
        report = await self.health()
        data = {"operation": "health", "status": report.status, "service": "mem0",
                "endpoint": self._client.display_url, "latency": report.latency_ms, "backend": self._backend,
                "message": report.message}
        if report.status == "down":
            raise ServiceUnavailable(f"mem0 is down: {report.message}", {"service": "mem0", **data})
        return data


def _json_object(response: UpstreamResponse) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _detail(response: UpstreamResponse) -> Any:
    """FastAPI's `detail`, without the `input` it echoes (which may hold memory text)."""
    detail = _json_object(response).get("detail")
    if isinstance(detail, list):
        return [{key: item[key] for key in ("loc", "msg", "type") if key in item} for item in detail
                if isinstance(item, dict)]
    return detail if isinstance(detail, str) else None


def _raise_for_status(response: UpstreamResponse, values: Mapping[str, Any]) -> None:
    """mem0's errors as the gateway's (services.md, mem0)."""
    status = response.status
    if status < 400:
        return
    detail = _detail(response)
    said = detail if isinstance(detail, str) else "the request was refused"
    if status == 404:
        kind, resource_id = ("memory", values.get("memory_id")) if values.get("memory_id") else (
            "user", values.get("user_id"))
        raise ResourceNotFound(f"mem0: no {kind} {resource_id}", {"kind": kind, "id": resource_id})
    if status in (400, 422):
        raise ValidationFailed(f"mem0 rejected the request: {said}", {"upstreamStatus": status, "errors": detail})
    if status == 405:
        raise OperationNotSupported("mem0: this memory server has no such route", {"upstreamStatus": status})
    if status in (401, 403):
        raise ServiceUnavailable(KEY_REFUSED, {"service": "mem0", "upstreamStatus": status})
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        retry_ms = int(float(retry_after) * 1000) if retry_after.replace(".", "", 1).isdigit() else 60_000
        raise RateLimitExceeded("mem0: rate limit exceeded", {"limit": None, "windowMs": None, "identifier": "mem0",
                                                              "retryAfterMs": retry_ms})
    if status >= 500:
        raise ServiceUnavailable(f"mem0 failed ({status})", {"service": "mem0", "upstreamStatus": status})
    raise ValidationFailed(f"mem0 rejected the request ({status})", {"upstreamStatus": status, "errors": detail})
