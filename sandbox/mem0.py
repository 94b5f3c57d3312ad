"""Stand-ins for the two memory servers the mem0 handler speaks to, for the tests and the sandbox: Starlette apps
that answer as those FastAPI servers do (a body that does not fit its model is 422 with FastAPI's `detail` list, a
refusal is `{"detail": ...}`), keeping memories in a dict instead of Qdrant or pgvector.

`ozean_wrapper`: the upstream's own wrapper (no OpenAPI file exists; its shapes are those of the deployment notes
quoted in shared/spec/services.md): mem0ai's answers nested as the wrapper passed them on. `stock_server`: the
routes of mem0ai/mem0's `server/main.py`. Relevance is the share of the query's words found in the memory."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, RootModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

Model = TypeVar("Model", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Any]]


class Refused(Exception):
    """An answer other than success: its status and FastAPI's `detail` (a message, or a list of field errors)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


@dataclass
class MemoryStore:
    api_key: str | None = None  # when set, every call to the wrapper needs it as X-API-Key
    memories: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (method, path, JSON body) of the latest requests: a sandbox runs for hours
    requests: deque[tuple[str, str, Any]] = field(default_factory=lambda: deque(maxlen=5000))
    failure: tuple[int, Any] | None = None  # answer every route of the wrapper with this status and `detail`
    delay_seconds: float = 0.0
    capacity: int | None = None  # the most memories kept (the oldest go first); None: no limit
    seed: int | None = None  # fixes the ids it makes

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(self, user_id: str, text: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
        memory_id = str(uuid.UUID(int=self._random.getrandbits(128), version=4))
        if self.capacity is not None and len(self.memories) >= self.capacity:
            del self.memories[next(iter(self.memories))]
        self.memories[memory_id] = {"id": memory_id, "memory": text, "hash": f"{self._random.getrandbits(128):032x}",
                                    "user_id": user_id, "metadata": metadata or {},
                                    "created_at": "2025-10-01T10:00:00+00:00", "updated_at": None}
        return self.memories[memory_id]

    def of_user(self, user_id: str) -> list[dict[str, Any]]:
        return [memory for memory in self.memories.values() if memory["user_id"] == user_id]

    def search(self, query: str, user_id: str) -> list[dict[str, Any]]:
        words = set(query.lower().split())
        scored = [{**memory, "score": round(len(words & set(memory["memory"].lower().split())) / len(words), 3)}
                  for memory in self.of_user(user_id)]
        return sorted(scored, key=lambda memory: -memory["score"])

    async def check(self, method: str, path: str, body: Any, x_api_key: str | None) -> None:
        self.requests.append((method, path, body))
        if self.api_key is not None and x_api_key != self.api_key:
            raise Refused(401, "Invalid API key")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.failure is not None:
            raise Refused(*self.failure)


async def parsed(request: Request, model: type[Model]) -> Model:
    """The JSON body as `model`, or FastAPI's 422: each field error at `["body", field]`, without a URL."""
    raw = await request.body()
    if not raw:
        raise Refused(422, [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Refused(422, [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {},
                             "ctx": {"error": str(exc)}}]) from None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = json.loads(exc.json(include_url=False))
        raise Refused(422, [{**error, "loc": ["body", *error["loc"]]} for error in errors]) from None


def answering(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint's value as JSON, or its refusal as FastAPI writes one."""
    async def answer(request: Request) -> Response:
        try:
            return JSONResponse(await endpoint(request))
        except Refused as refused:
            return JSONResponse({"detail": refused.detail}, refused.status)
    return answer


async def _router_refusal(request: Request, exc: Exception) -> Response:
    """No such route (404) or method (405), as FastAPI answers them."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


def _app(routes: list[tuple[str, str, Endpoint]]) -> Starlette:
    return Starlette(routes=[Route(path, answering(endpoint), methods=[method]) for method, path, endpoint in routes],
                     exception_handlers={HTTPException: _router_refusal})


class AddRequest(BaseModel):
    user_id: str = "default"
    content: str | None = None
    metadata: dict[str, Any] | None = None


class SearchRequest(BaseModel):
    query: str
    user_id: str = "default"
    limit: int = 10
    threshold: float | None = None


def ozean_wrapper(store: MemoryStore) -> Starlette:
    def key(request: Request) -> str | None:
        return request.headers.get("x-api-key")

    async def health(request: Request) -> Any:
        await store.check("GET", "/health", None, key(request))
        return {"status": "healthy", "backend": "qdrant"}

    async def add(request: Request) -> Any:
        body = await parsed(request, AddRequest)
        await store.check("POST", "/memory/add", body.model_dump(), key(request))
        if not body.content:
            raise Refused(400, "content is required")
        memory = store.add(body.user_id, body.content, body.metadata)
        return {"memory_id": {"results": [{"id": memory["id"], "memory": memory["memory"], "event": "ADD"}]},
                "status": "added"}

    async def search(request: Request) -> Any:
        body = await parsed(request, SearchRequest)
        await store.check("POST", "/memory/search", body.model_dump(), key(request))
        found = store.search(body.query, body.user_id)[: body.limit]
        return {"results": {"results": found}, "count": len(found)}

    async def get(request: Request) -> Any:
        user_id = request.path_params["user_id"]
        await store.check("GET", f"/memory/get/{user_id}", None, key(request))
        return {"memories": {"results": store.of_user(user_id)}, "user_id": user_id}

    async def delete(request: Request) -> Any:
        memory_id = request.path_params["memory_id"]
        await store.check("DELETE", f"/memory/delete/{memory_id}", None, key(request))
        if store.memories.pop(memory_id, None) is None:
            raise Refused(404, "Memory not found")
        return {"status": "deleted", "memory_id": memory_id}

    async def stats(request: Request) -> Any:
        await store.check("GET", "/memory/stats", None, key(request))
        return {"total_memories": len(store.memories), "collection": "ozean_memories",
                "users": len({memory["user_id"] for memory in store.memories.values()})}

    return _app([("GET", "/health", health), ("POST", "/memory/add", add), ("POST", "/memory/search", search),
                 ("GET", "/memory/get/{user_id}", get), ("DELETE", "/memory/delete/{memory_id}", delete),
                 ("GET", "/memory/stats", stats)])


class Message(BaseModel):
    role: str
    content: str


class MemoryCreate(BaseModel):
    messages: list[Message]
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] | None = None


class StockSearch(BaseModel):
    query: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    filters: dict[str, Any] | None = None


class MemoryUpdate(RootModel[dict[str, Any]]):
    """Whatever object is sent: mem0's server takes a plain dict and reads its `text`."""


def stock_server(store: MemoryStore) -> Starlette:
    """mem0's own server: a missing memory is an exception inside mem0ai, so the server answers 500. It takes no
    key, and it has no /health: FastAPI's /docs page is what answers there."""

    def existing(memory_id: str) -> dict[str, Any]:
        if memory_id not in store.memories:
            raise Refused(500, f"Memory with id {memory_id} not found")
        return store.memories[memory_id]

    async def add(request: Request) -> Any:
        body = await parsed(request, MemoryCreate)
        store.requests.append(("POST", "/memories", body.model_dump()))
        if not (body.user_id or body.agent_id or body.run_id):
            raise Refused(400, "At least one identifier (user_id, agent_id, run_id) is required.")
        memory = store.add(body.user_id or "", body.messages[-1].content, body.metadata)
        return {"results": [{"id": memory["id"], "memory": memory["memory"], "event": "ADD"}]}

    async def get_all(request: Request) -> Any:
        user_id = request.query_params.get("user_id")
        store.requests.append(("GET", "/memories", {"user_id": user_id}))
        if not user_id:
            raise Refused(400, "At least one identifier is required.")
        return {"results": store.of_user(user_id)}

    async def search(request: Request) -> Any:
        body = await parsed(request, StockSearch)
        store.requests.append(("POST", "/search", body.model_dump()))
        return {"results": store.search(body.query, body.user_id or "")}

    async def update(request: Request) -> Any:
        memory_id = request.path_params["memory_id"]
        body = await parsed(request, MemoryUpdate)
        store.requests.append(("PUT", f"/memories/{memory_id}", body.root))
        existing(memory_id)["memory"] = str(body.root.get("text", ""))
        return {"message": "Memory updated successfully!"}

    async def history(request: Request) -> Any:
        memory_id = request.path_params["memory_id"]
        store.requests.append(("GET", f"/memories/{memory_id}/history", None))
        memory = existing(memory_id)
        return [{"memory_id": memory_id, "old_memory": None, "new_memory": memory["memory"], "event": "ADD"}]

    async def delete(request: Request) -> Any:
        memory_id = request.path_params["memory_id"]
        store.requests.append(("DELETE", f"/memories/{memory_id}", None))
        existing(memory_id)
        del store.memories[memory_id]
        return {"message": "Memory deleted successfully"}

    async def docs(request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>mem0 REST APIs - Swagger UI</title>")

    app = _app([("POST", "/memories", add), ("GET", "/memories", get_all), ("POST", "/search", search),
                ("PUT", "/memories/{memory_id}", update), ("GET", "/memories/{memory_id}/history", history),
                ("DELETE", "/memories/{memory_id}", delete)])
    app.add_route("/docs", docs, methods=["GET"])
    return app
