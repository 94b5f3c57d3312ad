"""Our orchestrator's limits over real HTTP and WebSocket on 127.0.0.1: the body size limit, who a decision
is recorded as, the paginated pending list, and a feed client that stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect

from gateway_core.auth import TokenHasher, create_agent, create_operator, key_path_for, load_or_create_key
from gateway_core.clock import FrozenClock
from gateway_core.orchestrator.client import OrchestratorClient
from gateway_core.orchestrator.embedded import EmbeddedOrchestrator
from gateway_core.orchestrator.models import PermissionRespondBody
from gateway_core.store import SQLiteStore
from tests.servers import serve_asgi

INTERNAL_TOKEN = "internal-token-of-the-gateway-beside-us"
MiB = 1 << 20


@dataclass
class Running:
    orchestrator: EmbeddedOrchestrator
    store: SQLiteStore
    url: str
    tokens: dict[str, str]  # operator name -> token
    agent_id: str

    def http(self, operator: str = "alice") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[operator]}"},
                                 timeout=30)

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "", parts.port or 0


@contextlib.asynccontextmanager
async def running(tmp_path: Path, clock: FrozenClock | None = None, **options: Any) -> AsyncIterator[Running]:
    """Our orchestrator under uvicorn, with operators alice and mallory and one agent."""
    store = await SQLiteStore.open(tmp_path / "o.db", *([clock] if clock else []))
    hasher = TokenHasher(load_or_create_key(key_path_for(store.path)))
    tokens = {name: (await create_operator(store, hasher, name, "test"))[1] for name in ("alice", "mallory")}
    agent, _ = await create_agent(store, hasher, "deployer", "test")
    orchestrator = EmbeddedOrchestrator(store, hasher, internal_token=INTERNAL_TOKEN, **options)
    await orchestrator.start()
    try:
        async with serve_asgi(orchestrator.app()) as url:
            yield Running(orchestrator, store, url, tokens, agent.id)
    finally:
        await orchestrator.aclose()
        await store.close()


class Feed:
    """A healthy operator's /ws, reading every frame."""

    def __init__(self, socket: ClientConnection) -> None:
        self.events: list[dict[str, Any]] = []
        self.close_code: int | None = None  # once the server has closed the feed
        self._reader = asyncio.create_task(self._read(socket))

    async def _read(self, socket: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for frame in socket:
                self.events.append(json.loads(frame))
        self.close_code = socket.close_code

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    async def until(self, condition: Any, within: float = 10.0) -> None:
        """Waits until `condition()` holds; fails quoting the condition it waited for."""
        try:
            async with asyncio.timeout(within):
                while not condition():
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"waited {within:g} s for: {inspect.getsource(condition).strip()}") from None


@contextlib.asynccontextmanager
async def feed(run: Running, operator: str = "alice") -> AsyncIterator[Feed]:
    async with connect("ws" + run.url[4:] + "/ws", additional_headers={"Authorization": f"Bearer "
                                                                        f"{run.tokens[operator]}"}) as socket:
        collected = Feed(socket)
        await collected.until(lambda: collected.of("connection_established"))
        yield collected


async def file_request(client: httpx.AsyncClient, agent_id: str, operation: str, preview: Any = None) -> str:
    response = await client.post("/api/mcp/permission-request", json={
        "agent_id": agent_id, "service_name": "echo", "reason": "test", "timestamp": "2025-01-01T00:00:00Z",
        "operation": operation, "params_preview": preview})
    assert response.status_code == 200, response.text
    request_id: str = response.json()["request_id"]
    return request_id


# -- 1. the body size limit ---------------------------------------------------------------------------


async def _raw_post(run: Running, headers: str) -> socket.socket:
    """A socket that has sent the head of a POST to the permission-request route, and no body yet."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)  # little in flight: sent is near received
    sock.setblocking(False)
    await loop.sock_connect(sock, run.address)
    await loop.sock_sendall(sock, (f"POST /api/mcp/permission-request HTTP/1.1\r\nHost: {run.address[0]}\r\n"
                                   f"Authorization: Bearer {run.tokens['alice']}\r\n"
                                   f"Content-Type: application/json\r\n{headers}\r\n").encode())
    return sock


async def _answer(sock: socket.socket) -> tuple[int, bytes, Any]:
    """One HTTP response off `sock`: status, head, and its JSON body."""
    loop = asyncio.get_running_loop()
    data = b""
    while b"\r\n\r\n" not in data:
        received = await loop.sock_recv(sock, 65536)
        if not received:
            raise ConnectionError("closed before answering")
        data += received
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert length is not None
    while len(body) < int(length.group(1)):
        body += await loop.sock_recv(sock, 65536)
    return int(head.split()[1]), head, json.loads(body)


async def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return await asyncio.get_running_loop().sock_recv(sock, 1) == b""
    except ConnectionError:
        return True


async def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        loop = asyncio.get_running_loop()
        sock = await _raw_post(run, "Transfer-Encoding: chunked\r\n")
        answer = asyncio.create_task(_answer(sock))
        piece = b"x" * (64 * 1024)
        sent = 0
        try:
            while sent < 2 * MiB and not answer.done():
                await loop.sock_sendall(sock, b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                await asyncio.sleep(0.01)  # paced, so when the answer comes shows how much the server took
        except ConnectionError:
            pass  # the server answered and hung up while we were still sending
        # The last chunk (0\r\n\r\n) is never sent: a server reading the body whole would never answer.
        status, head, body = await asyncio.wait_for(answer, 5)
        closed = await asyncio.wait_for(_closed_by_server(sock), 5)
        sock.close()
    assert status == 413 and body == {"detail": f"Request body too large: the limit is {MiB} bytes"}
    assert sent < 2 * MiB, f"the client sent {sent} bytes before the answer"
    assert b"connection: close" in head.lower() and closed


async def test_a_declared_body_over_the_limit_is_refused_before_any_of_it_is_read(tmp_path: Path) -> None:
    async with running(tmp_path, max_body_bytes=4096) as run:
        sock = await _raw_post(run, f"Content-Length: {2 * MiB}\r\n")
        status, _, body = await asyncio.wait_for(_answer(sock), 5)
        sock.close()
        async with run.http() as client:
            agents = await client.post("/api/agents", json={"name": "x" * 5000})
            within = await file_request(client, run.agent_id, "deploy", "y" * 3000)
    assert status == 413 and body == {"detail": "Request body too large: the limit is 4096 bytes"}
    assert agents.status_code == 413
    assert within.startswith("perm_req_")


# -- 2. decided_by is the authenticated operator ------------------------------------------------------


async def test_a_decision_is_recorded_as_the_operator_whose_token_made_it(tmp_path: Path) -> None:
    async with running(tmp_path) as run, feed(run) as ops, run.http("alice") as alice, \
            run.http("mallory") as mallory:
        signed_as_mallory = await file_request(alice, run.agent_id, "deploy")
        answered = await alice.post("/api/mcp/permission-respond", json={
            "request_id": signed_as_mallory, "approved": True, "decided_by": "operator:mallory"})
        acting_for_alice = await file_request(alice, run.agent_id, "restart")
        await mallory.post("/api/mcp/permission-respond", json={"request_id": acting_for_alice, "approved": False},
                           headers={"x-acting-operator": "operator:alice"})  # honoured for the internal token only
        by_the_console = await file_request(alice, run.agent_id, "scale")
        console = OrchestratorClient(run.url, INTERNAL_TOKEN)  # as the console in our process holds it
        try:
            await console.respond(PermissionRespondBody(request_id=by_the_console, approved=True,
                                                        decided_by="operator:carol"))
        finally:
            await console.aclose()
        await ops.until(lambda: len(ops.of("mcp_permission_response")) == 3)
        recorded = {request_id: (await run.store.get_permission_request(request_id))
                    for request_id in (signed_as_mallory, acting_for_alice, by_the_console)}
        grants = {grant.id: grant for grant in await run.store.list_grants()}
        audit = {(event.subject, event.action): event.actor for event in await run.store.list_audit()}
    assert answered.status_code == 200
    expected = {signed_as_mallory: "operator:alice", acting_for_alice: "operator:mallory",
                by_the_console: "operator:carol"}
    assert {request_id: request.decided_by for request_id, request in recorded.items() if request} == expected
    assert {event["request_id"]: event["decided_by"] for event in ops.of("mcp_permission_response")} == expected
    assert audit[(signed_as_mallory, "permission.approved")] == "operator:alice"
    assert audit[(acting_for_alice, "permission.denied")] == "operator:mallory"
    assert audit[(by_the_console, "permission.approved")] == "operator:carol"
    assert grants[answered.json()["grant_id"]].granted_by == "operator:alice"


# -- 3. the pending list, paginated ----------------------------------------------------------------------


async def test_every_pending_request_is_listed_newest_included(tmp_path: Path) -> None:
    clock = FrozenClock(1_750_000_000.0)
    async with running(tmp_path, clock=clock) as run:
        filed = []
        for i in range(1118):
            request, _ = await run.store.file_permission_request(run.agent_id, "echo", f"op-{i}", None, "read",
                                                                 "test", None, 3600)
            filed.append(request)
            if i % 3 == 0:  # some share a creation time: the id breaks the tie
                clock.advance(0.001)
        expected = [request.id for request in sorted(filed, key=lambda r: (r.created_at, r.id))]
        client = OrchestratorClient(run.url, run.tokens["alice"])
        try:
            listed = await client.list_pending()
        finally:
            await client.aclose()
        async with run.http() as http:
            first = (await http.get("/api/mcp/permission-requests", params={"status": "pending"})).json()
            clock.advance(1)
            newest = await file_request(http, run.agent_id, "filed-while-paging")
            pages = [first]
            while pages[-1]["next_cursor"]:
                pages.append((await http.get("/api/mcp/permission-requests",
                                             params={"cursor": pages[-1]["next_cursor"], "limit": 5000})).json())
            bad_cursor = await http.get("/api/mcp/permission-requests", params={"cursor": "not-one-of-ours"})
            bad_limit = await http.get("/api/mcp/permission-requests", params={"limit": "many"})
    assert listed is not None and [request.request_id for request in listed] == expected
    assert filed[-1].id in {request.request_id for request in listed}
    assert [len(page["requests"]) for page in pages] == [500, 619]
    paged = [item["request_id"] for page in pages for item in page["requests"]]
    assert paged == [*expected, newest]
    assert set(first["requests"][0]) >= {"type", "request_id", "agent_id", "agent_name", "service_name", "timestamp"}
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["detail"]
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json()["detail"]


# -- 4. a feed client that stops reading -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def stuck_client(run: Running) -> AsyncIterator[ClientConnection]:
    """A /ws client that does not read, with a tiny receive buffer: the server's sends to it soon block."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, run.address)
    stuck = await connect("ws" + run.url[4:] + "/ws", sock=sock, max_queue=1, compression=None, proxy=None,
                          ping_interval=None, additional_headers={"Authorization": f"Bearer {run.tokens['mallory']}"})
    try:
        yield stuck
    finally:
        stuck.transport.abort()  # else the server, stopping, would wait for it


async def read_to_the_end(stuck: ClientConnection) -> list[dict[str, Any]]:
    """What the stuck client finds once it reads at last."""
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            async for frame in stuck:
                frames.append(json.loads(frame))
    return frames


async def test_a_client_that_stops_reading_delays_no_request_and_no_other_client(tmp_path: Path) -> None:
    async with running(tmp_path, feed_queue_frames=8, feed_close_timeout_seconds=0.5,
                       heartbeat_seconds=0.1) as run, feed(run) as ops, run.http() as http, \
            stuck_client(run) as stuck:
        await ops.until(lambda: any(beat["active_connections"] == 2 for beat in ops.of("heartbeat")))
        filed: list[str] = []
        preview = {"blob": "z" * (60 * 1024)}  # large frames (near the preview limit) fill its buffers quickly
        while len(ops.of("heartbeat")) == 0 or ops.of("heartbeat")[-1]["active_connections"] != 1:
            assert len(filed) < 400, "the stuck client was never dropped"
            # Each request is answered within a generous 5 s while the stuck client is connected.
            filed.append(await asyncio.wait_for(file_request(http, run.agent_id, f"op-{len(filed)}", preview), 5))
            await asyncio.sleep(0.05)
        after_the_drop = await asyncio.wait_for(file_request(http, run.agent_id, "after-the-drop"), 5)
        await ops.until(lambda: len(ops.of("mcp_permission_request")) == len(filed) + 1)
        late = await read_to_the_end(stuck)  # a prefix of the same feed, then the end of its connection
    assert [event["request_id"] for event in ops.of("mcp_permission_request")] == [*filed, after_the_drop]
    late_requests = [event["request_id"] for event in late if event["type"] == "mcp_permission_request"]
    assert late[0]["type"] == "connection_established" and late_requests == filed[:len(late_requests)]
    assert after_the_drop not in late_requests
    assert stuck.close_code in (1006, 1013)  # 1013 only if its close went out before being abandoned


async def test_disconnecting_every_client_abandons_a_close_that_cannot_complete(tmp_path: Path) -> None:
    async with running(tmp_path, feed_close_timeout_seconds=0.5) as run, run.http() as http, \
            stuck_client(run) as stuck, feed(run) as ops:
        preview = {"blob": "z" * (60 * 1024)}
        for i in range(170):  # 10 MiB the stuck client does not read: its sender blocks, its queue holds the rest
            await asyncio.wait_for(file_request(http, run.agent_id, f"op-{i}", preview), 5)
        await ops.until(lambda: len(ops.of("mcp_permission_request")) == 170)
        await asyncio.wait_for(run.orchestrator.disconnect_clients(), 5)
        await ops.until(lambda: ops.close_code is not None)
        late = await read_to_the_end(stuck)
    assert ops.close_code == 1012
    # Its close never went out: abandoned, the connection ended after what was already written.
    assert stuck.close_code == 1006 and 0 < len([e for e in late if e["type"] == "mcp_permission_request"]) < 170


async def test_bodies_that_cannot_be_stored_or_sent_back_are_refused_and_break_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as run, run.http() as http:
        nested = await http.post("/api/mcp/permission-request", content=b"[" * 990 + b"]" * 990)
        surrogate = await http.post("/api/mcp/permission-request", content=json.dumps({
            "agent_id": run.agent_id, "service_name": "echo", "reason": "r", "timestamp": "t",
            "params_preview": "\ud800"}).encode())  # ensure_ascii: sent as the escape \ud800, as a client may
        request_id = await file_request(http, run.agent_id, "op")
        for_ever = await http.post("/api/mcp/permission-respond", json={
            "request_id": request_id, "approved": True, "expires_in_seconds": 1e12})
        nowhere = await http.get("/api/agent//mcp-permissions")
        pending = await http.get("/api/mcp/permission-requests")
        permissions = await http.get(f"/api/agent/{run.agent_id}/mcp-permissions")
    assert nested.status_code == surrogate.status_code == for_ever.status_code == 422
    assert "lone surrogate" in surrogate.text and "expires_in_seconds" in for_ever.text
    assert nowhere.status_code == 404 and nowhere.json() == {"detail": "Not Found"}
    assert pending.status_code == 200 and [r["request_id"] for r in pending.json()["requests"]] == [request_id]
    assert permissions.status_code == 200 and permissions.json()["grants"] == []


async def test_every_event_our_orchestrator_sends_parses_back_into_the_model_it_was_built_from(
        tmp_path: Path) -> None:
    from gateway_core.orchestrator.models import EVENT_MODELS, parse_event

    async with running(tmp_path, heartbeat_seconds=0.1) as run, feed(run) as ops, run.http() as http:
        request_id = await file_request(http, run.agent_id, "op", {"uuid": "web", "wait": 0})
        grant_id = (await http.post("/api/mcp/permission-respond", json={
            "request_id": request_id, "approved": True, "scope": "operation", "expires_in_seconds": 60})
        ).json()["grant_id"]
        await http.delete(f"/api/mcp/grants/{grant_id}")
        await ops.until(lambda: {event["type"] for event in ops.events} >= {
            "connection_established", "heartbeat", "mcp_permission_request", "mcp_permission_response",
            "mcp_permission_revoked"})
    seen = {}
    for event in ops.events:
        parsed = parse_event(json.dumps(event))
        assert parsed is not None, event
        # Nothing sent is lost on the way back, and nothing is invented: the model is the wire shape.
        assert parsed.model_dump(mode="json", exclude_none=True) == {k: v for k, v in event.items() if v is not None}
        seen[event["type"]] = type(parsed)
    assert set(seen.values()) == set(EVENT_MODELS)
    revoked = next(event for event in ops.events if event["type"] == "mcp_permission_revoked")
    assert revoked["operation"] == "op" and revoked["revoked_by"] == "operator:alice"
