"""Stand-ins for the two memory servers the mem0 handler speaks to, written with FastAPI as both are, keeping
memories in a dict instead of Qdrant or pgvector.

`ozean_wrapper`: the upstream's own wrapper (no OpenAPI file exists; its shapes are those of the deployment notes
quoted in shared/spec/services.md): mem0ai's answers nested as the wrapper passed them on. `stock_server`: the
routes of mem0ai/mem0's `server/main.py`. Relevance is the share of the query's words found in the memory."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel


@dataclass
class MemoryStore:
    api_key: str | None = None  # when set, every call needs it as X-API-Key
    memories: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, JSON body)
    failure: tuple[int, Any] | None = None  # answer every route with this status and FastAPI `detail`
    delay_seconds: float = 0.0

    def add(self, user_id: str, text: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
        memory_id = str(uuid.uuid4())
        self.memories[memory_id] = {"id": memory_id, "memory": text, "hash": uuid.uuid4().hex, "user_id": user_id,
                                    "metadata": metadata or {}, "created_at": "2025-10-01T10:00:00+00:00",
                                    "updated_at": None}
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
            raise HTTPException(401, "Invalid API key")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.failure is not None:
            raise HTTPException(*self.failure)


class AddRequest(BaseModel):
    user_id: str = "default"
    content: str | None = None
    metadata: dict[str, Any] | None = None


class SearchRequest(BaseModel):
    query: str
    user_id: str = "default"
    limit: int = 10
    threshold: float | None = None


def ozean_wrapper(store: MemoryStore) -> FastAPI:
    app = FastAPI()

    async def gate(x_api_key: str | None = Header(None)) -> str | None:
        return x_api_key

    @app.get("/health")
    async def health(key: str | None = Depends(gate)) -> dict[str, Any]:
        await store.check("GET", "/health", None, key)
        return {"status": "healthy", "backend": "qdrant"}

    @app.post("/memory/add")
    async def add(request: AddRequest, key: str | None = Depends(gate)) -> dict[str, Any]:
        await store.check("POST", "/memory/add", request.model_dump(), key)
        if not request.content:
            raise HTTPException(400, "content is required")
        memory = store.add(request.user_id, request.content, request.metadata)
        return {"memory_id": {"results": [{"id": memory["id"], "memory": memory["memory"], "event": "ADD"}]},
                "status": "added"}

    @app.post("/memory/search")
    async def search(request: SearchRequest, key: str | None = Depends(gate)) -> dict[str, Any]:
        await store.check("POST", "/memory/search", request.model_dump(), key)
        found = store.search(request.query, request.user_id)[: request.limit]
        return {"results": {"results": found}, "count": len(found)}

    @app.get("/memory/get/{user_id}")
    async def get(user_id: str, key: str | None = Depends(gate)) -> dict[str, Any]:
        await store.check("GET", f"/memory/get/{user_id}", None, key)
        return {"memories": {"results": store.of_user(user_id)}, "user_id": user_id}

    @app.delete("/memory/delete/{memory_id}")
    async def delete(memory_id: str, key: str | None = Depends(gate)) -> dict[str, Any]:
        await store.check("DELETE", f"/memory/delete/{memory_id}", None, key)
        if store.memories.pop(memory_id, None) is None:
            raise HTTPException(404, "Memory not found")
        return {"status": "deleted", "memory_id": memory_id}

    @app.get("/memory/stats")
    async def stats(key: str | None = Depends(gate)) -> dict[str, Any]:
        await store.check("GET", "/memory/stats", None, key)
        return {"total_memories": len(store.memories), "collection": "ozean_memories",
                "users": len({memory["user_id"] for memory in store.memories.values()})}

    return app


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


def stock_server(store: MemoryStore) -> FastAPI:
    """mem0's own server: a missing memory is an exception inside mem0ai, so the server answers 500."""
    app = FastAPI()

    def existing(memory_id: str) -> dict[str, Any]:
        if memory_id not in store.memories:
            raise HTTPException(500, f"Memory with id {memory_id} not found")
        return store.memories[memory_id]

    @app.post("/memories")
    async def add(request: MemoryCreate) -> dict[str, Any]:
        store.requests.append(("POST", "/memories", request.model_dump()))
        if not (request.user_id or request.agent_id or request.run_id):
            raise HTTPException(400, "At least one identifier (user_id, agent_id, run_id) is required.")
        memory = store.add(request.user_id or "", request.messages[-1].content, request.metadata)
        return {"results": [{"id": memory["id"], "memory": memory["memory"], "event": "ADD"}]}

    @app.get("/memories")
    async def get_all(user_id: str | None = None) -> dict[str, Any]:
        store.requests.append(("GET", "/memories", {"user_id": user_id}))
        if not user_id:
            raise HTTPException(400, "At least one identifier is required.")
        return {"results": store.of_user(user_id)}

    @app.post("/search")
    async def search(request: StockSearch) -> dict[str, Any]:
        store.requests.append(("POST", "/search", request.model_dump()))
        return {"results": store.search(request.query, request.user_id or "")}

    @app.put("/memories/{memory_id}")
    async def update(memory_id: str, updated_memory: dict[str, Any]) -> dict[str, Any]:
        store.requests.append(("PUT", f"/memories/{memory_id}", updated_memory))
        existing(memory_id)["memory"] = str(updated_memory.get("text", ""))
        return {"message": "Memory updated successfully!"}

    @app.get("/memories/{memory_id}/history")
    async def history(memory_id: str) -> list[dict[str, Any]]:
        memory = existing(memory_id)
        return [{"memory_id": memory_id, "old_memory": None, "new_memory": memory["memory"], "event": "ADD"}]

    @app.delete("/memories/{memory_id}")
    async def delete(memory_id: str) -> dict[str, Any]:
        existing(memory_id)
        del store.memories[memory_id]
        return {"message": "Memory deleted successfully"}

    return app
