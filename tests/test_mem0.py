"""The mem0 handler through the gateway over real HTTP, against stand-ins of the upstream's own FastAPI wrapper and
of the stock mem0 server (sandbox/mem0.py): every operation and alias, the nested answers unwrapped, scoping
by user, the error mapping, health, and the upstream bugs not to repeat."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from starlette.responses import HTMLResponse

from gateway_core.clock import FrozenClock
from gateway_core.handlers.mem0 import MEM0_OPERATIONS, Mem0Handler
from sandbox.mem0 import MemoryStore, ozean_wrapper, stock_server
from tests.agent_client import AgentClient
from tests.servers import RunningGateway, run_gateway, serve_asgi

pytestmark = pytest.mark.asyncio(loop_scope="module")
API_KEY = "mem0-key-5b7c1e"
SECRET_TEXT = "the vault code is 4711"


@dataclass
class Mem0:
    store: MemoryStore
    client: AgentClient
    gateway: RunningGateway
    agent_id: str
NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z


@contextlib.asynccontextmanager
async def mem0_gateway(tmp_path: Path, store: MemoryStore, flavor: str = "ozean",
                       **settings: Any) -> AsyncIterator[Mem0]:
    app = ozean_wrapper(store) if flavor == "ozean" else stock_server(store)
    async with serve_asgi(app) as url:
        settings.setdefault("mem0_api_url", url)
        async with run_gateway(tmp_path / "gw.db", extra_specs=(), handler_classes={"mem0": Mem0Handler},
                               mem0_api_flavor=flavor, health={"interval_seconds": 3600}, **settings) as gateway:
            # Granted mem0: the tests read and write other users' memories (its own need no grant: alwaysActive).
            agent_id, token = await gateway.add_agent("memory-bot", "memory-bot")
            await gateway.grant(agent_id, "mem0")
            yield Mem0(store, AgentClient(gateway.url, token, "mem0"), gateway, agent_id)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mem0]:
    async with mem0_gateway(tmp_path_factory.mktemp("mem0"), MemoryStore(api_key=API_KEY),
                            mem0_api_key=API_KEY, clock=FrozenClock(NOON)) as running:
        yield running


@pytest.fixture
def mem0(shared: Mem0) -> Iterator[Mem0]:
    shared.store.memories.clear()
    shared.store.requests.clear()
    yield shared
    shared.store.failure, shared.store.delay_seconds = None, 0.0


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# -- the operations --------------------------------------------------------------------------------


async def test_remember_sends_the_wrappers_body_and_unwraps_the_nested_id(mem0: Mem0) -> None:
    data = await mem0.client.data("remember", [SECRET_TEXT], options={"user_id": "alice", "metadata": {"topic": "ops"}})
    stored = next(iter(mem0.store.memories.values()))
    assert data == {"operation": "memory_added", "message": "Memory stored", "memory": {
        "id": stored["id"], "user_id": "alice", "content": SECRET_TEXT, "metadata": {"topic": "ops"}}}
    method, path, body = mem0.store.requests[-1]
    assert (method, path, body["user_id"], body["content"]) == ("POST", "/memory/add", "alice", SECRET_TEXT)
    assert body["metadata"]["source"] == "mcp-gateway" and body["metadata"]["topic"] == "ops"
    assert body["metadata"]["timestamp"] == "2026-01-01T12:00:00.000+00:00"  # the gateway's clock, not today's


async def test_search_unwraps_results_and_applies_the_threshold_here(mem0: Mem0) -> None:
    mem0.store.add("alice", "deploy key rotates on fridays", {"topic": "ops"})
    mem0.store.add("alice", "deploy happens daily", {})
    mem0.store.add("bob", "deploy key rotates on fridays", {})
    data = await mem0.client.data("search", {"query": "deploy key rotates", "user_id": "alice"})
    assert data["operation"] == "memory_search" and data["resultCount"] == 1
    assert data["results"][0]["content"] == "deploy key rotates on fridays" and data["results"][0]["relevance"] == 1.0
    assert mem0.store.requests[-1][2] == {"query": "deploy key rotates", "user_id": "alice", "limit": 10,
                                          "threshold": 0.7}
    loose = await mem0.client.data("query", ["deploy key rotates"], options={"user_id": "alice", "threshold": 0.3})
    assert loose["resultCount"] == 2


async def test_get_context_and_list_read_the_users_memories_with_get(mem0: Mem0) -> None:
    for n in range(60):
        mem0.store.add("carol", f"note {n} " + "x" * 120, {"n": n})
    context = await mem0.client.data("get-context", ["carol"])
    assert mem0.store.requests[-1][:2] == ("GET", "/memory/get/carol")
    assert context["operation"] == "get_memories" and context["memoryCount"] == 50
    assert context["memories"][0]["content"].startswith("note 0 ") and context["memories"][0]["metadata"] == {"n": 0}
    page = await mem0.client.data("list", {"user_id": "carol", "offset": 55, "limit": 10})
    assert (page["operation"], page["total"], page["offset"], len(page["memories"])) == ("list_memories", 60, 55, 5)
    assert page["memories"][0]["content"] == ("note 55 " + "x" * 120)[:100] + "..."


async def test_delete_calls_the_route_the_server_has_and_a_missing_memory_is_not_found(mem0: Mem0) -> None:
    kept = mem0.store.add("alice", "keep me", {})
    data = await mem0.client.data("delete-memory", [kept["id"]])
    assert data == {"operation": "memory_deleted", "memory_id": kept["id"], "message": "Memory deleted",
                    "status": "deleted"}
    assert mem0.store.requests[-1][:2] == ("DELETE", f"/memory/delete/{kept['id']}") and not mem0.store.memories
    missing = await mem0.client.error("remove", ["nope"])
    assert missing["code"] == -32007 and missing["data"] == {"kind": "memory", "id": "nope"}


async def test_update_is_not_supported_by_the_wrapper_and_nothing_is_sent(mem0: Mem0) -> None:
    refused = await mem0.client.error("update", ["m1", "new text"])
    assert refused["code"] == -32002 and "cannot update" in refused["message"] and not mem0.store.requests


async def test_stats_and_health(mem0: Mem0) -> None:
    mem0.store.add("alice", "one", {})
    stats = await mem0.client.data("stats")
    assert stats == {"operation": "memory_stats", "stats": {"total_memories": 1, "collection": "ozean_memories",
                                                           "users": 1}}
    health = await mem0.client.data("test")
    assert (health["status"], health["service"], health["backend"]) == ("healthy", "mem0", "qdrant")
    assert isinstance(health["latency"], float) and "qdrant" not in health and "version" not in health  # not invented


@pytest.mark.parametrize("alias", ["add", "store", "remember"])
async def test_every_alias_reaches_its_operation(mem0: Mem0, alias: str) -> None:
    assert (await mem0.client.data(alias, ["a note"], options={"user_id": "u"}))["operation"] == "memory_added"


async def test_the_catalogs_names_and_the_spec_costs(mem0: Mem0) -> None:
    names = {name for operation in MEM0_OPERATIONS for name in (operation.name, *operation.aliases)}
    assert {"list-memories", "delete-memory", "get-memories", "list-all", "test", "query"} <= names
    result = await mem0.client.result("list-memories", options={"user_id": "nobody"})
    assert result["data"]["memories"] == [] and (result["metadata"]["tokensUsed"], result["metadata"]["cost"]) == (
        300, 0.0006)


async def test_the_slash_form_takes_the_rest_of_the_line(mem0: Mem0) -> None:
    body = (await mem0.client.slash("/mcp-memory remember it's 'quoted', all of it", user_id="dave")).json()
    assert body["result"]["data"]["memory"]["content"] == "it's 'quoted', all of it"
    found = (await mem0.client.slash("/mcp-mem0 search quoted all of it", user_id="dave")).json()
    assert found["result"]["data"]["resultCount"] == 1


# -- scoping ---------------------------------------------------------------------------------------


async def test_without_a_user_id_the_call_is_never_the_shared_default(mem0: Mem0) -> None:
    response = await mem0.client.call("remember", ["mine"])
    sent = [body for _, path, body in mem0.store.requests if path == "/memory/add"]
    assert all(body["user_id"] != "default" for body in sent)
    if "error" in response.json():
        assert response.json()["error"]["code"] == -32602 and not sent


async def test_user_id_defaults_to_the_calling_agent(mem0: Mem0) -> None:
    data = await mem0.client.data("remember", ["mine"])
    assert data["memory"]["user_id"] == mem0.agent_id


async def test_without_a_grant_an_agent_reaches_its_own_memories_and_no_one_elses(mem0: Mem0) -> None:
    """alwaysActive let any agent read, add to and delete any agent's memories by naming its user_id."""
    agent_id, token = await mem0.gateway.add_agent("loner", "loner")
    loner = AgentClient(mem0.gateway.url, token, "mem0")
    others = mem0.store.add("memory-bot", "not yours", {})
    own = await loner.data("remember", ["my own note"])
    named_self = await loner.data("get-context", [agent_id])
    found = await loner.data("search", {"query": "my own note"})
    counted = await loner.data("stats")
    sent_before = len(mem0.store.requests)
    read_other = await loner.error("get-context", ["memory-bot"])
    add_other = await loner.error("remember", {"content": "planted", "user_id": "memory-bot"})
    delete_other = await loner.error("delete", [others["id"]])
    delete_own = await loner.error("delete", [own["memory"]["id"]])
    assert own["memory"]["user_id"] == agent_id and named_self["memoryCount"] == 1 and found["resultCount"] == 1
    assert counted["stats"]["total_memories"] == 2
    for refused in (read_other, add_other, delete_other, delete_own):  # asked of an operator: none is linked here
        assert refused["code"] == -32004 and "no grant for mem0" in refused["message"], refused
    assert len(mem0.store.requests) == sent_before and len(mem0.store.memories) == 2


async def test_an_id_that_is_a_path_step_is_refused_and_others_stay_one_segment(mem0: Mem0) -> None:
    for step in ("..", "."):
        refused = await mem0.client.error("delete", [step])
        assert refused["code"] == -32602 and refused["data"]["errors"][0]["field"] == "memory_id", refused
    # Sent as one segment, encoded whole: the server's router finds no such user (it routes on the decoded path).
    unknown = await mem0.client.error("get-context", ["../../admin?x="])
    assert unknown["code"] == -32007 and unknown["data"] == {"kind": "user", "id": "../../admin?x="}


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("failure", "code"), [
    ((400, "content is required"), -32009),
    ((422, [{"type": "missing", "loc": ["body", "query"], "msg": "Field required", "input": {"q": SECRET_TEXT}}]),
     -32009),
    ((405, "Method Not Allowed"), -32002), ((500, "Qdrant is unavailable"), -32001),
    ((503, "overloaded"), -32001), ((429, "slow down"), -32005)])
async def test_errors_map_as_the_spec_says_and_never_echo_memory_text(
        mem0: Mem0, failure: tuple[int, Any], code: int, caplog: pytest.LogCaptureFixture) -> None:
    mem0.store.failure = failure
    with caplog.at_level(logging.DEBUG):
        error = await mem0.client.error("remember", [SECRET_TEXT], options={"user_id": "alice"})
    assert error["code"] == code, error
    assert SECRET_TEXT not in json.dumps(error) and SECRET_TEXT not in caplog.text
    if failure[0] == 422:
        assert error["data"]["errors"] == [{"loc": ["body", "query"], "msg": "Field required", "type": "missing"}]


async def test_a_page_that_is_not_json_is_the_upstream_failing_not_a_bug_of_ours(tmp_path: Path) -> None:
    """A proxy's HTML page in front of mem0 (HTTP 200) was -32603, an internal error with a traceback."""
    async def proxy_page(scope: Any, receive: Any, send: Any) -> None:
        await HTMLResponse("<html>Sign in to continue</html>")(scope, receive, send)

    async with serve_asgi(proxy_page) as url, mem0_gateway(tmp_path, MemoryStore(), mem0_api_url=url) as running:
        error = await running.client.error("search", ["deploy key"])
    assert error["code"] == -32001 and "not JSON (text/html)" in error["message"], error


async def test_a_refused_key_is_a_configuration_error_and_degrades_health(tmp_path: Path) -> None:
    store = MemoryStore(api_key=API_KEY)
    async with mem0_gateway(tmp_path, store, mem0_api_key="wrong-key") as running:
        refused = await running.client.error("search", ["x"], options={"user_id": "a"})
        report = await running.gateway.gateway.health.check("mem0")
    assert refused["code"] == -32001 and "MEM0_API_KEY" in refused["message"] and "wrong-key" not in json.dumps(refused)
    assert report.status == "degraded"


async def test_a_slow_server_is_a_timeout(tmp_path: Path) -> None:
    store = MemoryStore(delay_seconds=1.0)
    async with mem0_gateway(tmp_path, store, http_timeout_ms=200) as running:
        error = await running.client.error("search", ["x"], options={"user_id": "a"})
    assert error["code"] == -32006 and error["http"] == 504


async def test_a_server_that_is_down_is_down_not_a_success_saying_unhealthy(tmp_path: Path) -> None:
    async with mem0_gateway(tmp_path, MemoryStore(), mem0_api_url=_closed_url()) as running:
        health = await running.client.error("health")
        assert running.gateway.gateway.service_status("mem0") == "down"
        refused = await running.client.error("search", ["x"], options={"user_id": "a"})
    assert health["code"] == -32001 and health["data"]["status"] == "down"
    assert refused["code"] == -32001


async def test_not_configured_without_the_url(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", extra_specs=(), handler_classes={"mem0": Mem0Handler}) as gateway:
        _, token = await gateway.add_agent()
        error = await AgentClient(gateway.url, token, "mem0").error("search", ["x"])
        assert gateway.gateway.service_status("mem0") == "not_configured"
    assert error["code"] == -32001 and "MEM0_API_URL" in error["message"]


# -- the stock mem0 server (MEM0_API_FLAVOR=mem0) --------------------------------------------------


async def test_the_stock_server_flavor(tmp_path: Path) -> None:
    store = MemoryStore()
    async with mem0_gateway(tmp_path, store, "mem0") as running:
        client = running.client
        added = await client.data("remember", ["deploy key rotates on fridays"], options={"user_id": "alice"})
        memory_id = added["memory"]["id"]
        assert store.requests[-1][2]["messages"] == [{"role": "user", "content": "deploy key rotates on fridays"}]
        found = await client.data("search", ["deploy key rotates"], options={"user_id": "alice"})
        context = await client.data("get-context", ["alice"])
        assert store.requests[-1][:3] == ("GET", "/memories", {"user_id": "alice"})
        updated = await client.data("update", [memory_id, "deploy key rotates on mondays"])
        history = await client.data("memory-history", [memory_id])
        deleted = await client.data("delete", [memory_id])
        missing = await client.error("delete", [memory_id])  # mem0ai raises: the stock server answers 500
        stats = await client.error("stats")
        health = await client.data("health")
    assert found["resultCount"] == 1 and context["memories"][0]["content"] == "deploy key rotates on fridays"
    assert updated["operation"] == "memory_updated" and history["history"][0]["new_memory"].endswith("mondays")
    assert deleted["message"] == "Memory deleted successfully" and missing["code"] == -32001
    assert stats["code"] == -32002 and health["status"] == "healthy"
