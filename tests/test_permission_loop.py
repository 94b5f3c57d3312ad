"""The on-call loop an operator can trust (issue 10), over real HTTP and WebSocket on 127.0.0.1, against our
orchestrator and against the stand-in for the existing one (tests/external_orchestrator.py): what a refused call
is recorded as, what the orchestrator can grant, who decided, asking again after a decision, the existing
orchestrator's wrapped 404s, requests filed while no console listened, one-second ids, revoked agents, UUIDs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_core.clock import FrozenClock
from gateway_core.config import ConfigError
from gateway_core.events import PermissionEvent, Subscription
from gateway_core.orchestrator.client import RouteMissing, UnknownRequest
from gateway_core.orchestrator.embedded import CAPABILITIES
from gateway_core.orchestrator.models import (
    WHOLE_SERVICE_ONLY,
    PermissionRequestEvent,
    PermissionRespondBody,
    parse_event,
)
from gateway_core.permission_gate import DecisionNotSupported
from gateway_core.server import HttpServer
from gateway_core.store import AuditEvent, SQLiteStore
from gateway_core.store.migrations import MIGRATIONS
from tests.cli import mcp_console
from tests.external_orchestrator import ExternalOrchestrator
from tests.servers import LinkedGateway, run_linked, serve_asgi
from tests.test_permissions import Feed, call, feed, respond, until_status

BOTH = pytest.mark.parametrize("orchestrator", ["ours", "external"])
ALWAYS_ASK = {"always_ask": ["destructive"]}


@dataclass
class Loop:
    """The gateway linked to our orchestrator, or to the stand-in for the existing one (`external`)."""

    linked: LinkedGateway
    external: ExternalOrchestrator | None

    async def add_agent(self, name: str = "deployer") -> tuple[str, str]:
        agent_id, token = await self.linked.add_agent(name)
        if self.external is not None:
            self.external.add_agent(agent_id, name)
        return agent_id, token

    def operator_feed(self) -> contextlib.AbstractAsyncContextManager[Feed]:
        return feed(self.linked.orchestrator_url, self.linked.operator_token)

    async def ledger(self) -> list[str]:
        """The calls' statuses, oldest first."""
        await self.linked.gateway.recorder.flush()
        return [record.status for record in reversed(await self.linked.gateway.store.recent_calls())]

    async def audit(self, subject: str, action: str) -> list[AuditEvent]:
        """The audit rows for `subject` and `action`, once there is one."""
        gateway = self.linked.gateway
        async with asyncio.timeout(5):
            while True:
                await gateway.recorder.flush()
                rows = [event for event in await gateway.store.list_audit() if (event.subject, event.action) == (
                    subject, action)]
                if rows:
                    return rows
                await asyncio.sleep(0.02)


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def loop_with(orchestrator: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Loop]:
    """The stand-in's clock stands still: every request it names falls in the same second, as the worst case."""
    if orchestrator == "ours":
        async with run_linked(tmp_path / "ours.db", **settings) as linked:
            yield Loop(linked, None)
        return
    external = ExternalOrchestrator(FrozenClock(1_750_000_000.0))
    async with serve_asgi(external.app()) as url, \
            run_linked(tmp_path / "external.db", orchestrator_url=url, **settings) as linked:
        yield Loop(linked, external)


async def requests_seen(events: Subscription, count: int) -> list[PermissionRequestEvent]:
    """The first `count` permission requests the gateway passed on to its subscribers (the console)."""
    seen: list[PermissionRequestEvent] = []
    async with asyncio.timeout(10):
        while len(seen) < count:
            event = await events.get()
            if isinstance(event, PermissionEvent) and isinstance(event.event, PermissionRequestEvent):
                seen.append(event.event)
    return seen


# -- 4. a refused call is recorded as what it was ---------------------------------------------------------


@BOTH
async def test_a_refused_call_is_recorded_as_what_it_was(orchestrator: str, tmp_path: Path) -> None:
    async with loop_with(orchestrator, tmp_path) as loop, loop.operator_feed() as ops:
        _, token = await loop.add_agent()
        held = asyncio.create_task(call(loop.linked, token, waitForApproval=30))
        request = await ops.next("mcp_permission_request")
        await respond(loop.linked, request["request_id"], False, reason="not during the freeze")
        denied = (await held).json()["error"]
        pending = (await call(loop.linked, token)).json()["error"]  # asks again: a new request, not held
        # Held on that new request, which (from the stand-in) has the denied one's id: that denial is not its answer.
        timed_out = (await call(loop.linked, token, waitForApproval=0.3)).json()["error"]
        statuses = await loop.ledger()
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(loop.linked.url + "/metrics")).text
        db = loop.linked.gateway.store.path
    assert [error["data"]["status"] for error in (denied, pending, timed_out)] == ["denied", "pending", "timed_out"]
    assert {error["code"] for error in (denied, pending, timed_out)} == {-32004}
    assert "not during the freeze" in denied["message"] and "still pending" in timed_out["message"]
    assert timed_out["data"]["requestId"] == pending["data"]["requestId"]
    assert statuses == ["denied", "pending", "timed_out"]
    assert 'status="timed_out"' in metrics and 'status="pending"' in metrics
    exported = await mcp_console("calls", "export", "--format", "jsonl", "--db", db)
    assert [json.loads(line)["status"] for line in exported.stdout.splitlines()] == statuses


async def test_an_expired_request_is_recorded_as_expired(tmp_path: Path) -> None:
    async with loop_with("ours", tmp_path, permission={"request_ttl_seconds": 0.3}) as loop:
        _, token = await loop.add_agent()
        error = (await call(loop.linked, token, waitForApproval=10)).json()["error"]
        statuses = await loop.ledger()
    assert error["data"]["status"] == "expired" and statuses == ["expired"]


# -- 5. what the orchestrator can grant -----------------------------------------------------------------


async def test_our_orchestrator_says_what_it_can_grant(tmp_path: Path) -> None:
    async with loop_with("ours", tmp_path) as loop, httpx.AsyncClient(base_url=loop.linked.orchestrator_url) as http:
        answered = await http.get("/api/mcp/capabilities",
                                  headers={"Authorization": f"Bearer {loop.linked.operator_token}"})
        anonymous = await http.get("/api/mcp/capabilities")
        gate = loop.linked.gateway.permissions
    assert answered.json() == {"status": "success", "scopes": ["once", "operation", "service"], "expiry": True,
                               "pending_list": True, "history": True, "grants": True, "audit": True}
    assert anonymous.status_code == 401
    assert gate.capabilities == CAPABILITIES and gate.has_pending_list is True


async def test_the_existing_orchestrator_is_known_to_grant_whole_services_only(tmp_path: Path) -> None:
    async with loop_with("external", tmp_path) as loop:
        gate = loop.linked.gateway.permissions
        assert loop.linked.gateway.orchestrator is not None
        asked = await loop.linked.gateway.orchestrator.capabilities()
    assert asked == gate.capabilities == WHOLE_SERVICE_ONLY
    assert gate.has_pending_list is False


async def test_always_ask_with_an_orchestrator_that_cannot_grant_once_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    external = ExternalOrchestrator()
    async with serve_asgi(external.app()) as url:
        with pytest.raises(ConfigError, match=r"always_ask .* needs one-time approvals, which the orchestrator at "
                                              rf"{url} cannot grant"):
            async with run_linked(tmp_path / "x.db", orchestrator_url=url, policy=ALWAYS_ASK):
                pass
        monkeypatch.setenv("MCP_CONSOLE_POLICY__ALWAYS_ASK", '["destructive"]')
        served = await asyncio.wait_for(mcp_console("serve", "--port", "0", "--orchestrator-port", "0",
                                                    "--orchestrator-url", url, "--db", tmp_path / "cli.db",
                                                    check=False), 30)
    assert served.returncode == 1
    assert served.stderr.count("\n") == 1 and "cannot grant" in served.stderr and "Traceback" not in served.stderr


async def test_always_ask_with_an_orchestrator_unreachable_at_start_refuses_those_calls_clearly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    external = ExternalOrchestrator()
    later = HttpServer(external.app(), "127.0.0.1", 0)
    later.stop()  # its port, free for now: the orchestrator is down when the gateway starts
    caplog.set_level(logging.WARNING, "gateway_core.runtime")
    async with run_linked(tmp_path / "x.db", orchestrator_url=later.url, wait_for_link=False, policy=ALWAYS_ASK,
                          permission={"orchestrator_timeout_seconds": 0.5}) as linked:
        agent_id, token = await linked.add_agent()
        external.add_agent(agent_id, "deployer")
        while_down = (await call(linked, token, "wipe", ["disk-1"])).json()["error"]
        server = HttpServer(external.app(), "127.0.0.1", later.port)
        serving = asyncio.create_task(server.serve())
        try:
            await until(lambda: linked.gateway.link_state is not None
                        and linked.gateway.link_state.status == "connected", within=20)
            wipe = (await call(linked, token, "wipe", ["disk-1"])).json()["error"]
            read = (await call(linked, token)).json()["error"]
        finally:
            server.stop()
            await serving
        statuses = await Loop(linked, external).ledger()
    assert "could not be asked" in caplog.text
    assert while_down["data"]["status"] == "orchestrator_unavailable"
    assert wipe["data"]["status"] == "cannot_grant_once" and wipe["data"]["requestId"] is None
    assert "one-time approval" in wipe["message"] and "no permission request was filed" in wipe["message"]
    assert read["data"]["status"] == "pending"
    assert [external.requests[request_id]["operation"] for request_id in external.filed] == ["echo"]
    assert statuses == ["orchestrator_unavailable", "cannot_grant_once", "pending"]


# -- 6. the operator's name in the audit log ------------------------------------------------------------


@BOTH
async def test_a_decision_made_here_is_audited_under_the_operator(orchestrator: str, tmp_path: Path) -> None:
    async with loop_with(orchestrator, tmp_path) as loop:
        gate = loop.linked.gateway.permissions
        events = loop.linked.gateway.events.subscribe()
        agent_id, token = await loop.add_agent()
        request_id = (await call(loop.linked, token)).json()["error"]["data"]["requestId"]
        await requests_seen(events, 1)
        decided = await gate.decide(request_id, True, operator_id="operator:alice", reason="on call")
        assert (await until_status(loop.linked, token, 200)).status_code == 200
        [approved] = await loop.audit(request_id, "permission.approved")
        [seen] = await loop.audit(request_id, "permission.decision_seen")
        if orchestrator == "ours":
            assert decided.grant_id is not None
            await gate.revoke(decided.grant_id, operator_id="operator:alice")
            [revoked] = await loop.audit(decided.grant_id, "grant.revoked")
            assert revoked.actor == "operator:alice"
        else:
            with pytest.raises(RouteMissing):
                await gate.revoke("grant_1", operator_id="operator:alice")
    assert decided.approved
    assert (approved.actor, approved.detail["agent_id"], approved.detail["service"]) == ("operator:alice", agent_id,
                                                                                         "echo")
    assert (approved.detail["scope"], approved.detail["reason"]) == ("service", "on call")
    assert (seen.actor, seen.detail["status"]) == ("operator:alice", "approved")


async def test_a_decision_the_existing_orchestrator_cannot_carry_out_is_not_sent(tmp_path: Path) -> None:
    async with loop_with("external", tmp_path) as loop:
        assert loop.external is not None
        gate = loop.linked.gateway.permissions
        _, token = await loop.add_agent()
        request_id = (await call(loop.linked, token, "wipe", ["disk-1"])).json()["error"]["data"]["requestId"]
        with pytest.raises(DecisionNotSupported, match="scope 'once'"):
            await gate.decide(request_id, True, operator_id="operator:alice", scope="once")
        with pytest.raises(DecisionNotSupported, match="limited time"):
            await gate.decide(request_id, True, operator_id="operator:alice", expires_in_seconds=3600)
        still_pending = list(loop.external.requests)
    assert still_pending == [request_id]


# -- 7 and 10. after a decision the next call asks again; one-second ids ---------------------------------


@BOTH
async def test_after_a_denial_the_next_call_asks_an_operator_again(orchestrator: str, tmp_path: Path) -> None:
    async with loop_with(orchestrator, tmp_path) as loop, loop.operator_feed() as ops:
        events = loop.linked.gateway.events.subscribe()
        _, token = await loop.add_agent()
        first = (await call(loop.linked, token)).json()["error"]["data"]["requestId"]
        await ops.next("mcp_permission_request")
        await respond(loop.linked, first, False)
        await ops.next("mcp_permission_response")
        async with asyncio.timeout(5):  # the gateway hears the denial a moment after the operator's feed
            while len(ops.of("mcp_permission_request")) < 2:
                retried = (await call(loop.linked, token)).json()["error"]
                await asyncio.sleep(0.05)
        asked_again = ops.of("mcp_permission_request")[1]
        seen = await requests_seen(events, 2)  # what the console is shown: the same id twice from the stand-in
    assert retried["data"]["status"] == "pending"
    assert retried["data"]["requestId"] == asked_again["request_id"]
    assert [request.request_id for request in seen] == [first, asked_again["request_id"]]
    assert [request.operation for request in seen] == ["echo", "echo"]  # from the reason, where the event lacks it


def test_a_request_without_an_operation_takes_it_from_the_reason() -> None:
    def parsed(**fields: Any) -> Any:
        return parse_event(json.dumps({"type": "mcp_permission_request", "request_id": "perm_req_1_abc",
                                       "agent_id": "abc", "service_name": "coolify", "timestamp": 1.0, **fields}))

    assert parsed(reason="Agent abc attempted to use coolify for operation: deploy-application").operation \
        == "deploy-application"
    assert parsed(reason="please let me deploy").operation is None
    assert parsed(reason="Agent abc attempted to use coolify for operation: x", operation="health").operation \
        == "health"


# -- 8. the existing orchestrator's 404s, wrapped in 500s -------------------------------------------------


async def test_an_agent_the_orchestrator_does_not_know_is_refused_as_such(tmp_path: Path) -> None:
    async with loop_with("external", tmp_path) as loop:
        assert loop.external is not None
        _, stranger = await loop.linked.add_agent("stranger")  # ours knows it, the orchestrator does not
        _, named = await loop.linked.add_agent("old-bot", "old-bot")  # not a UUID: the orchestrator refuses it
        loop.external.add_agent("old-bot", "old-bot")
        unknown = (await call(loop.linked, stranger)).json()["error"]
        not_uuid = (await call(loop.linked, named)).json()["error"]
        statuses = await loop.ledger()
        filed = list(loop.external.filed)
    assert (unknown["code"], unknown["data"]["status"], unknown["data"]["requestId"]) == (-32004, "unknown_agent",
                                                                                          None)
    assert "does not know agent" in unknown["message"] and "no permission request was filed" in unknown["message"]
    assert not_uuid["data"]["status"] == "unknown_agent" and "UUID" in not_uuid["message"]
    assert statuses == ["unknown_agent", "unknown_agent"] and filed == []


@BOTH
async def test_a_decision_on_a_request_the_orchestrator_does_not_know_says_so(orchestrator: str,
                                                                               tmp_path: Path) -> None:
    async with loop_with(orchestrator, tmp_path) as loop:
        client = loop.linked.gateway.orchestrator
        assert client is not None
        with pytest.raises(UnknownRequest):
            await client.respond(PermissionRespondBody(request_id="perm_req_1_gone", approved=True))
        with pytest.raises(UnknownRequest):
            await loop.linked.gateway.permissions.decide("perm_req_1_gone", False, operator_id="operator:alice")


# -- 9. a request filed while no console listened ----------------------------------------------------------


async def test_a_request_filed_while_no_console_listened_is_filed_again(tmp_path: Path) -> None:
    async with loop_with("external", tmp_path, permission={"refile_seconds": 1.0}) as loop:
        assert loop.external is not None
        _, token = await loop.add_agent()
        first = (await call(loop.linked, token)).json()["error"]["data"]["requestId"]  # no operator listening
        async with loop.operator_feed() as ops:
            reused = (await call(loop.linked, token)).json()["error"]["data"]["requestId"]
            filed_before = len(loop.external.filed)
            await asyncio.sleep(1.1)
            again = (await call(loop.linked, token)).json()["error"]
            shown = await ops.next("mcp_permission_request")
        has_list = loop.linked.gateway.permissions.has_pending_list
    assert reused == first and filed_before == 1
    assert (again["data"]["status"], len(loop.external.filed)) == ("pending", 2)
    assert shown["request_id"] == again["data"]["requestId"]
    assert has_list is False


# -- 11. revoking an agent ends its grants and requests, and the feed hears it -----------------------------


async def test_an_agent_revoked_by_another_process_ends_its_grants_and_requests(tmp_path: Path) -> None:
    async with loop_with("ours", tmp_path) as loop, loop.operator_feed() as ops:
        store = loop.linked.gateway.store
        agent_id, token = await loop.add_agent()
        grant = await store.add_grant(agent_id, "coolify", None, None, "test")
        held = asyncio.create_task(call(loop.linked, token, waitForApproval=30))
        request = await ops.next("mcp_permission_request")
        await mcp_console("agents", "revoke", agent_id, "--db", store.path)
        ended = await ops.next("mcp_permission_response", timeout=10)
        revoked = await ops.next("mcp_permission_revoked", timeout=10)
        error = (await held).json()["error"]
        await asyncio.sleep(1.5)  # another expiry check: nothing is told twice
        told = (len(ops.of("mcp_permission_response")), len(ops.of("mcp_permission_revoked")))
        pending = await store.list_permission_requests("pending")
        active = await store.list_grants(agent_id=agent_id)
        audit = {(event.subject, event.action): event.actor for event in await store.list_audit()}
    assert (ended["request_id"], ended["status"], ended["approved"]) == (request["request_id"], "cancelled", False)
    assert ended["reason"] == "the agent was revoked"
    assert (revoked["grant_id"], revoked["agent_id"]) == (grant.id, agent_id)
    assert (error["data"]["status"], error["data"]["requestId"]) == ("cancelled", request["request_id"])
    assert told == (1, 1)
    assert pending == [] and active == []
    actor = audit[(agent_id, "agent.revoked")]
    assert audit[(grant.id, "grant.revoked")] == audit[(request["request_id"], "permission.cancelled")] == actor


async def test_upgrading_ends_the_grants_and_requests_of_agents_revoked_before(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(db)) as old, old:
        old.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        for version, script in MIGRATIONS[:2]:
            old.executescript(script)
            old.execute("INSERT INTO schema_version VALUES (?, 1)", (version,))
        for agent_id, revoked_at in (("gone", 5.0), ("here", None)):
            old.execute("INSERT INTO agents VALUES (?, ?, ?, 1, ?)", (agent_id, agent_id, f"hash-{agent_id}",
                                                                       revoked_at))
            old.execute("INSERT INTO grants (id, agent_id, service, granted_by, granted_at) VALUES (?, ?, 'echo', "
                        "'test', 1)", (f"grant_{agent_id}", agent_id))
            old.execute("INSERT INTO permission_requests (id, agent_id, service, reason, created_at, expires_at) "
                        "VALUES (?, ?, 'echo', 'test', 1, 9e9)", (f"perm_req_{agent_id}", agent_id))
    store = await SQLiteStore.open(db, FrozenClock(1_800_000_000.0))
    try:
        grants = {grant.agent_id: grant for grant in await store.list_grants(active_only=False)}
        requests = {request.agent_id: request for request in await store.list_permission_requests(None)
                    + await store.list_permission_requests("pending")}
        audit = {(event.subject, event.action): event for event in await store.list_audit()}
    finally:
        await store.close()
    assert (grants["gone"].revoked_at, grants["gone"].revoked_by) == (1_800_000_000.0, "migration")
    assert grants["here"].revoked_at is None
    assert (requests["gone"].status, requests["gone"].decided_at) == ("cancelled", 1_800_000_000.0)
    assert requests["here"].status == "pending"
    assert audit[("grant_gone", "grant.revoked")].detail["reason"] == "the agent was revoked"
    assert audit[("perm_req_gone", "permission.cancelled")].ts == 1_800_000_000.0
    assert {subject for subject, _ in audit} == {"grant_gone", "perm_req_gone"}


# -- 12. agent ids the existing orchestrator accepts ---------------------------------------------------------


async def test_new_agents_get_uuid_ids_unless_one_is_given(tmp_path: Path) -> None:
    db = tmp_path / "ids.db"
    generated = json.loads((await mcp_console("agents", "add", "deployer", "--json", "--db", db)).stdout)
    given = json.loads((await mcp_console("agents", "add", "old", "--id", "deploy-bot", "--json", "--db", db)).stdout)
    assert str(uuid.UUID(generated["id"])) == generated["id"]
    assert given["id"] == "deploy-bot"
