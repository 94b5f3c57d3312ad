"""Permissions end to end over real HTTP and WebSocket on 127.0.0.1: the gateway, our orchestrator (and a
stand-in for the external one), an operator's feed, and agents asking."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from gateway_core.auth import create_operator
from gateway_core.orchestrator.client import LinkState, OrchestratorClient
from gateway_core.orchestrator.models import PermissionRequestEvent, parse_event
from tests.external_orchestrator import ExternalOrchestrator
from tests.servers import LinkedGateway, run_linked, serve_asgi
from tests.test_wire_contract import execute


class Feed:
    """An operator's WebSocket on the orchestrator, collecting events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    async def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event["type"] == kind and not event.get("_taken"):
                        event["_taken"] = True
                        return event
                self._arrived.clear()
                await self._arrived.wait()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]


@contextlib.asynccontextmanager
async def feed(orchestrator_url: str, token: str | None) -> AsyncIterator[Feed]:
    collected = Feed()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect("ws" + orchestrator_url[4:] + "/ws", additional_headers=headers) as socket:
        async def read() -> None:
            async for frame in socket:
                collected.events.append(json.loads(frame))
                collected._arrived.set()

        reader = asyncio.create_task(read())
        await collected.next("connection_established")
        try:
            yield collected
        finally:
            reader.cancel()


async def respond(linked: LinkedGateway, request_id: str, approved: bool, **extra: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {linked.operator_token}"} if linked.operator_token else {}
    async with httpx.AsyncClient(base_url=linked.orchestrator_url, headers=headers) as client:
        return await client.post("/api/mcp/permission-respond",
                                 json={"request_id": request_id, "approved": approved, **extra})


async def call(linked: LinkedGateway, token: str, operation: str = "echo", args: Any = None,
               **options: Any) -> httpx.Response:
    body = execute("echo", operation, args if args is not None else ["hi"])
    if options:
        body["params"]["options"] = options
    async with httpx.AsyncClient(base_url=linked.url, headers={"authorization": f"Bearer {token}"},
                                 timeout=60) as client:
        return await client.post("/mcp/rpc", json=body)


async def until_status(linked: LinkedGateway, token: str, status: int, within: float = 3.0) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = await call(linked, token)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


async def test_a_missing_permission_is_requested_approved_and_the_retry_succeeds(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token) as ops:
        agent_id, token = await linked.add_agent("deployer")
        refused = await call(linked, token)
        error = refused.json()["error"]
        assert (refused.status_code, error["code"], error["data"]["status"]) == (403, -32004, "pending")
        request_id = error["data"]["requestId"]
        assert re.fullmatch(r"perm_req_[0-9a-f]{32}", request_id)
        seen = await ops.next("mcp_permission_request")
        assert (seen["request_id"], seen["agent_id"], seen["agent_name"], seen["service_name"], seen["operation"],
                seen["risk"]) == (request_id, agent_id, "deployer", "echo", "echo", "read")
        assert seen["params_preview"] == {"message": "hi", "times": 1}
        approved = await respond(linked, request_id, True, decided_by="alice")
        assert approved.json()["message"] == "Permission granted"
        decision = await ops.next("mcp_permission_response")
        assert (decision["approved"], decision["status"], decision["scope"]) == (True, "approved", "service")
        assert (await until_status(linked, token, 200)).status_code == 200
        await linked.gateway.recorder.flush()
        actions = [event.action for event in await linked.gateway.store.list_audit()]
    assert {"permission.requested", "permission.approved", "permission.refused", "grant.added"} <= set(actions)


async def test_a_held_call_goes_through_the_moment_it_is_approved(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token) as ops:
        _, token = await linked.add_agent()
        held = asyncio.create_task(call(linked, token, waitForApproval=30))
        request = await ops.next("mcp_permission_request")
        await asyncio.sleep(0.2)
        assert not held.done()
        answered = await respond(linked, request["request_id"], True)
        approved_at = time.monotonic()
        response = await held
        latency = time.monotonic() - approved_at
    assert answered.status_code == 200
    assert response.status_code == 200 and response.json()["result"]["data"] == {"echo": "hi"}
    # Released by the approval, not by the 30 s hold running out (bench/permission_roundtrip.py times it).
    assert latency < 10, f"the held call answered {latency:.1f} s after the approval"


async def test_a_denied_held_call_says_denied_with_the_request_id(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token) as ops:
        _, token = await linked.add_agent()
        held = asyncio.create_task(call(linked, token, waitForApproval=30))
        request = await ops.next("mcp_permission_request")
        await respond(linked, request["request_id"], False, reason="not during the freeze")
        error = (await held).json()["error"]
    assert error["code"] == -32004
    assert (error["data"]["status"], error["data"]["requestId"]) == ("denied", request["request_id"])
    assert "not during the freeze" in error["message"]


async def test_an_unanswered_request_expires_and_the_held_call_says_so(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", permission={"request_ttl_seconds": 0.3}) as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as ops:
        _, token = await linked.add_agent()
        error = (await call(linked, token, waitForApproval=10)).json()["error"]
        expired = await ops.next("mcp_permission_response")
        late = await respond(linked, error["data"]["requestId"], True)
    assert error["data"]["status"] == "expired"
    assert (expired["status"], expired["approved"]) == ("expired", False)
    assert late.status_code == 409 and late.json()["status"] == "expired"


async def test_a_wait_is_capped_and_a_timeout_leaves_the_request_pending(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", permission={"max_wait": 0.3}) as linked:
        _, token = await linked.add_agent()
        started = time.monotonic()
        error = (await call(linked, token, waitForApproval=60)).json()["error"]
        pending = await linked.gateway.store.list_permission_requests("pending")
    assert time.monotonic() - started < 3
    assert error["data"]["status"] == "timed_out" and "still pending" in error["message"]
    assert [request.id for request in pending] == [error["data"]["requestId"]]


async def test_requests_are_deduplicated_while_pending(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token) as ops:
        _, token = await linked.add_agent()
        first, second = await asyncio.gather(call(linked, token), call(linked, token, args=["other"]))
        await ops.next("mcp_permission_request")
        await asyncio.sleep(0.3)
    ids = {first.json()["error"]["data"]["requestId"], second.json()["error"]["data"]["requestId"]}
    assert len(ids) == 1
    assert len(ops.of("mcp_permission_request")) == 1


async def test_two_operators_answering_at_once_first_decision_wins(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked:
        _, token = await linked.add_agent()
        request_id = (await call(linked, token)).json()["error"]["data"]["requestId"]
        answers = await asyncio.gather(respond(linked, request_id, True, decided_by="alice"),
                                       respond(linked, request_id, False, decided_by="bob"))
        grants = await linked.gateway.store.list_grants()
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 409]
    winner = next(answer for answer in answers if answer.status_code == 200).json()
    conflict = next(answer for answer in answers if answer.status_code == 409).json()
    assert conflict["approved"] == winner["approved"]
    assert len(grants) == (1 if winner["approved"] else 0)


async def test_a_revoked_grant_stops_working(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token) as ops:
        _, token = await linked.add_agent()
        request_id = (await call(linked, token)).json()["error"]["data"]["requestId"]
        grant_id = (await respond(linked, request_id, True)).json()["grant_id"]
        assert (await until_status(linked, token, 200)).status_code == 200
        async with httpx.AsyncClient(base_url=linked.orchestrator_url,
                                     headers={"Authorization": f"Bearer {linked.operator_token}"}) as client:
            revoked = await client.delete(f"/api/mcp/grants/{grant_id}")
        assert revoked.status_code == 200
        assert (await ops.next("mcp_permission_revoked"))["grant_id"] == grant_id
        again = await until_status(linked, token, 403, within=1.0)
    assert again.status_code == 403 and again.json()["error"]["data"]["status"] == "pending"


async def test_a_one_time_approval_covers_exactly_one_call_with_those_arguments(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token) as ops:
        _, token = await linked.add_agent()
        held = asyncio.create_task(call(linked, token, "wipe", ["disk-1"], waitForApproval=10))
        request = await ops.next("mcp_permission_request")
        assert request["risk"] == "destructive"
        await respond(linked, request["request_id"], True, scope="once")
        assert (await held).status_code == 200
        second = await call(linked, token, "wipe", ["disk-1"])
    assert second.status_code == 403 and second.json()["error"]["data"]["status"] == "pending"


async def test_always_ask_needs_a_one_time_approval_even_with_the_service_granted(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", policy={"always_ask": ["destructive"]}) as linked:
        agent_id, token = await linked.add_agent()
        await linked.gateway.store.add_grant(agent_id, "echo", None, None, "test")
        read = await call(linked, token, "echo", ["hi"])
        wipe = await call(linked, token, "wipe", ["disk-1"])
    assert read.status_code == 200
    assert wipe.status_code == 403 and wipe.json()["error"]["data"]["status"] == "pending"


async def test_an_unreachable_orchestrator_fails_closed_and_says_nothing_was_filed(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db", orchestrator_url="http://127.0.0.1:9", wait_for_link=False,
                          permission={"orchestrator_timeout_seconds": 0.5}) as linked:
        _, token = await linked.add_agent()
        response = await call(linked, token)
        ready = await _get(linked.url + "/ready")
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["data"]["status"]) == (403, -32004, "orchestrator_unavailable")
    assert error["data"]["requestId"] is None and "no permission request was filed" in error["message"]
    assert ready.status_code == 503 and ready.json()["checks"]["orchestrator"]["ok"] is False


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def test_pending_requests_and_grants_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    async with run_linked(db) as linked:
        agent_id, token = await linked.add_agent(agent_id="survivor")
        pending_id = (await call(linked, token)).json()["error"]["data"]["requestId"]
        await linked.gateway.store.add_grant(agent_id, "coolify", None, None, "test")
    async with run_linked(db) as linked, httpx.AsyncClient(base_url=linked.orchestrator_url,
                                 headers={"Authorization": f"Bearer {linked.operator_token}"}) as client:
        pending = (await client.get("/api/mcp/permission-requests", params={"status": "pending"})).json()
        grants = (await client.get("/api/mcp/grants", params={"agent_id": "survivor"})).json()
        permissions = (await client.get("/api/agent/survivor/mcp-permissions")).json()
    assert [request["request_id"] for request in pending["requests"]] == [pending_id]
    assert [grant["service"] for grant in grants["grants"]] == ["coolify"]
    assert permissions["allowed_mcps"] == ["coolify"]


async def test_a_dropped_feed_comes_back_without_missing_or_repeating_a_request(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked:
        _, token = await linked.add_agent()
        _, other_token = await linked.add_agent("other")
        client = OrchestratorClient(linked.orchestrator_url, linked.operator_token, max_backoff_seconds=1.0)
        seen: list[str] = []
        states: list[LinkState] = []

        async def watch() -> None:
            async for item in client.events():
                if isinstance(item, LinkState):
                    states.append(item)
                elif isinstance(item, PermissionRequestEvent):
                    seen.append(item.request_id)

        watcher = asyncio.create_task(watch())
        try:
            await _until(lambda: any(state.status == "connected" for state in states))
            first = (await call(linked, token)).json()["error"]["data"]["requestId"]
            await _until(lambda: first in seen)
            assert linked.runtime.orchestrator is not None
            await linked.runtime.orchestrator.disconnect_clients()
            second = (await call(linked, other_token)).json()["error"]["data"]["requestId"]  # filed while away
            await _until(lambda: second in seen and sum(s.status == "connected" for s in states) >= 2)
        finally:
            watcher.cancel()
            await client.aclose()
    assert seen == [first, second]
    assert any(state.status == "reconnecting" and state.retry_in is not None for state in states)


async def _until(condition: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


async def test_our_orchestrator_needs_an_operator_token_everywhere_but_health(tmp_path: Path) -> None:
    async with run_linked(tmp_path / "p.db") as linked:
        async with httpx.AsyncClient(base_url=linked.orchestrator_url) as client:
            health = await client.get("/health")
            anonymous = [await client.get("/api/mcp/permission-requests"), await client.get("/api/mcp/grants"),
                         await client.post("/api/mcp/permission-respond", json={"request_id": "x", "approved": True}),
                         await client.get("/api/agents")]
            created = await client.post("/api/agents", json={"name": "made-by-api"},
                                        headers={"Authorization": f"Bearer {linked.operator_token}"})
            malformed = await client.get("/api/agent/bad%20id/mcp-permissions",
                                         headers={"Authorization": f"Bearer {linked.operator_token}"})
            unknown = await client.get("/api/agent/ghost/mcp-permissions",
                                       headers={"Authorization": f"Bearer {linked.operator_token}"})
        with pytest.raises(websockets.exceptions.WebSocketException):
            async with connect("ws" + linked.orchestrator_url[4:] + "/ws") as socket:
                await socket.recv()
        async with connect("ws" + linked.orchestrator_url[4:] + f"/ws?token={linked.operator_token}") as socket:
            hello = json.loads(await socket.recv())
    assert health.status_code == 200
    assert [response.status_code for response in anonymous] == [401, 401, 401, 401]
    assert created.status_code == 201 and created.json()["token"].startswith("mcpa_")
    assert malformed.status_code == 400 and malformed.json() == {"detail": "Invalid agent ID format"}
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Agent ghost not found"}
    assert hello["type"] == "connection_established"
    assert hello["message"] == "Connected to Orchestrator Backend"  # the spec keeps its words


async def test_a_feed_refused_for_its_token_says_which_setting_gives_one(tmp_path: Path) -> None:
    """--no-gateway without ORCHESTRATOR_TOKEN retried for ever, saying only 'refused the feed (HTTP 403)'."""
    async with run_linked(tmp_path / "p.db") as linked:
        client = OrchestratorClient(linked.orchestrator_url, "mcpo_not-a-token", max_backoff_seconds=0.2)
        reasons: list[str] = []
        async with asyncio.timeout(10):
            async for item in client.events():
                if isinstance(item, LinkState) and item.status == "reconnecting":
                    reasons.append(item.reason or "")
                    break
        await client.aclose()
    assert "refused the feed (HTTP 403): set ORCHESTRATOR_TOKEN" in reasons[0], reasons


async def test_a_call_without_the_option_is_held_as_long_as_the_config_says(tmp_path: Path) -> None:
    """The spec holds a call up to permission_wait_seconds, "per-request option or config": existing agents send
    no option, and there was no such setting, so every one of their calls was answered pending at once."""
    async with run_linked(tmp_path / "p.db", permission={"wait_seconds": 20}) as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as operator:
        _, token = await linked.add_agent()
        held = asyncio.create_task(call(linked, token))
        request = await operator.next("mcp_permission_request")
        assert not held.done()
        await respond(linked, request["request_id"], True, scope="operation")
        answered = await asyncio.wait_for(held, 10)
        not_held = (await call(linked, token, "wipe", ["disk"], waitForApproval=0)).json()  # the option wins
    assert answered.status_code == 200 and answered.json()["result"]["status"] == "success"
    assert not_held["error"]["data"]["status"] == "pending"


async def test_a_revoked_operators_feed_of_our_orchestrator_is_closed(tmp_path: Path) -> None:
    """The feed checked the token once, at connect: a revoked operator went on hearing every request."""
    async with run_linked(tmp_path / "p.db") as linked:
        store = linked.gateway.store
        operator, token = await create_operator(store, linked.gateway.hasher, "bob", "test")
        async with connect("ws" + linked.orchestrator_url[4:] + f"/ws?token={token}") as bobs, \
                connect("ws" + linked.orchestrator_url[4:] + f"/ws?token={linked.operator_token}") as alices:
            hello = json.loads(await bobs.recv())
            await store.revoke_operator(operator.id, "test")
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                async with asyncio.timeout(10):
                    while True:
                        await bobs.recv()
            still = json.loads(await alices.recv())
    assert hello["type"] == "connection_established" and still["type"] == "connection_established"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_the_same_flow_against_the_external_orchestrator(tmp_path: Path) -> None:
    external = ExternalOrchestrator()
    async with serve_asgi(external.app()) as external_url, \
            run_linked(tmp_path / "x.db", orchestrator_url=external_url) as linked, feed(external_url, None) as ops:
        agent_id, token = await linked.add_agent("deployer")
        external.add_agent(agent_id, "deployer")
        error = (await call(linked, token)).json()["error"]
        request_id = error["data"]["requestId"]
        assert re.fullmatch(rf"perm_req_\d+_{agent_id[:8]}", request_id)
        event = await ops.next("mcp_permission_request")
        assert isinstance(event["timestamp"], float)
        parsed = parse_event(json.dumps(event))
        assert isinstance(parsed, PermissionRequestEvent) and parsed.timestamp is not None
        # The external orchestrator names requests by the second: the held call files another id, and the
        # approval of the first (which grants the whole service) must release it too.
        await asyncio.sleep(1.05 - time.time() % 1)
        held = asyncio.create_task(call(linked, token, waitForApproval=10))
        await asyncio.sleep(0.2)
        await respond(linked, request_id, True)
        held_response = await held
        retry = await until_status(linked, token, 200)
        assert linked.gateway.orchestrator is not None
        listed = await linked.gateway.orchestrator.list_pending()
    assert held_response.status_code == 200
    assert retry.status_code == 200
    assert listed is None and linked.gateway.orchestrator.has_pending_list is False
    assert external.agents[agent_id]["metadata"]["allowed_mcps"] == ["echo"]


@pytest.mark.parametrize("stamp", [1730891450.123, "2024-11-06T11:10:50.123Z", "2024-11-06T11:10:50.123"])
def test_events_accept_every_timestamp_shape(stamp: Any) -> None:
    event = parse_event(json.dumps({"type": "mcp_permission_response", "request_id": "r", "approved": True,
                                    "timestamp": stamp}))
    assert event is not None and event.timestamp.tzinfo is not None


def test_unknown_event_types_are_ignored_quietly() -> None:
    for frame in ['{"type": "orchestrator_chat", "text": "hi"}', '{"type": "thinking_block"}', "not json", "[]"]:
        assert parse_event(frame) is None


async def test_a_thousand_held_calls_cost_no_thread_each_and_all_resume_on_one_approval(tmp_path: Path) -> None:
    import threading

    from gateway_core.models import ExecuteParams

    no_limit = {"per_agent": {"max_requests": 100_000, "window_ms": 60_000}}
    async with run_linked(tmp_path / "p.db", rate_limit=no_limit) as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as ops:
        agent_id, _ = await linked.add_agent()
        threads_before = threading.active_count()
        params = ExecuteParams.model_validate({"service": "echo", "operation": "echo", "args": ["hi"],
                                               "options": {"waitForApproval": 60}})
        held = [asyncio.create_task(linked.gateway.execute(agent_id, params)) for _ in range(1000)]
        request = await ops.next("mcp_permission_request")
        await asyncio.sleep(0.5)
        assert not any(task.done() for task in held)
        assert threading.active_count() <= threads_before + 2  # the store's and the resolver's, at most
        assert linked.gateway.permissions.decisions.waiting == 1  # one request (deduplicated), one future
        await respond(linked, request["request_id"], True)
        async with asyncio.timeout(30):
            outcomes = await asyncio.gather(*held)
    assert all(outcome.result is not None for outcome in outcomes)
    assert len(ops.of("mcp_permission_request")) == 1


async def test_a_decision_made_while_the_gateways_feed_was_away_still_releases_the_held_call(
    tmp_path: Path,
) -> None:
    async with run_linked(tmp_path / "p.db") as linked, feed(linked.orchestrator_url, linked.operator_token) as ops:
        _, token = await linked.add_agent()
        held = asyncio.create_task(call(linked, token, waitForApproval=20))
        request = await ops.next("mcp_permission_request")
        orchestrator = linked.runtime.orchestrator
        assert orchestrator is not None
        await orchestrator.disconnect_clients()  # the gateway's feed (and ours) drop...
        await respond(linked, request["request_id"], True)  # ...and the broadcast reaches nobody
        response = await asyncio.wait_for(held, 10)
    assert response.status_code == 200
