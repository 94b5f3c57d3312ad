"""The wire contract of gateway-protocol.md, tested from the outside over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.echo_service import ECHO_SPEC
from tests.servers import RunningGateway, run_gateway


def rpc(method: str, params: Any = None, rpc_id: Any = "req-1") -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rpc_id}
    if params is not None:
        body["params"] = params
    return body


def execute(service: str, operation: str, args: Any = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"service": service, "operation": operation, **extra}
    if args is not None:
        params["args"] = args
    return rpc("mcp.execute", params)


async def counts(gw: RunningGateway) -> dict[str, int]:
    """Rows in every table, after the batched ledger writes have landed."""
    await gw.gateway.recorder.flush()
    db = gw.gateway.store._db
    result = {}
    for table in ("calls", "audit", "agents", "grants"):
        async with db.execute(f"SELECT COUNT(*) FROM {table}") as cursor:
            row = await cursor.fetchone()
            result[table] = row[0]
    return result


async def test_health_reports_status_utc_timestamp_and_version(gw: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as client:
        body = (await client.get("/health")).json()
    assert body["status"] == "healthy"
    assert body["timestamp"].endswith("Z")
    assert body["version"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", "/mcp/rpc"), ("DELETE", "/health"),
                                            ("POST", "/mcp/rpc/"), ("GET", "/health/")])  # no 307 to the route
async def test_unknown_routes_answer_404_naming_the_route(gw: RunningGateway, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as client:
        response = await client.request(method, path)
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "message": f"Route {method} {path} not found"}


BAD_INPUTS = [
    # (name, body, auth mode, expected code, HTTP status, audited)
    ("not json", b'{"jsonrpc": "2.0", "method"', "agent", -32700, 400, False),
    ("not an object", b"42", "agent", -32600, 400, False),
    ("wrong jsonrpc", json.dumps({"jsonrpc": "1.0", "method": "mcp.listServices", "id": 1}).encode(),
     "agent", -32600, 400, False),
    ("unknown method", json.dumps(rpc("mcp.frobnicate")).encode(), "agent", -32601, 404, False),
    ("unknown service", json.dumps(execute("nosuch", "x")).encode(), "agent", -32000, 404, False),
    ("unknown operation", json.dumps(execute("echo", "shout", ["hi"])).encode(), "agent", -32002, 400, False),
    ("bad args", json.dumps(execute("echo", "echo", {"message": "hi", "times": 99})).encode(),
     "agent", -32602, 400, False),
    ("no token", json.dumps(execute("echo", "echo", ["hi"])).encode(), "none", -32003, 401, True),
    ("wrong token", json.dumps(execute("echo", "echo", ["hi"])).encode(), "wrong", -32003, 401, True),
    ("X-Agent-Id not matching", json.dumps(execute("echo", "echo", ["hi"])).encode(), "mismatch",
     -32003, 401, True),
    ("oversize body", b'{"jsonrpc":"2.0","method":"mcp.listServices","pad":"' + b"x" * (1 << 20) + b'"}',
     "agent", -32600, 413, False),
]


@pytest.mark.parametrize(("name", "body", "auth", "code", "status", "audited"), BAD_INPUTS,
                         ids=[case[0] for case in BAD_INPUTS])
async def test_bad_input_is_refused_with_its_code_and_writes_only_its_ledger_row(
    gw: RunningGateway, name: str, body: bytes, auth: str, code: int, status: int, audited: bool
) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    headers = {"content-type": "application/json"}
    if auth in ("agent", "mismatch"):
        headers["authorization"] = f"Bearer {token}"
    if auth == "wrong":
        headers["authorization"] = "Bearer mcpa_not-a-real-token"
    if auth == "mismatch":
        headers["x-agent-id"] = "someone-else"
    before = await counts(gw)
    async with httpx.AsyncClient(base_url=gw.url) as client:
        response = await client.post("/mcp/rpc", content=body, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert "mcpa_" not in response.text  # never a token in an answer
    after = await counts(gw)
    assert after["calls"] == before["calls"] + 1
    assert after["audit"] == before["audit"] + (1 if audited else 0)
    assert (after["agents"], after["grants"]) == (before["agents"], before["grants"])


async def test_each_refusal_names_what_is_wrong(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()
    auth = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=gw.url, headers=auth) as client:
        unknown_service = (await client.post("/mcp/rpc", json=execute("nosuch", "x"))).json()["error"]
        unknown_op = (await client.post("/mcp/rpc", json=execute("echo", "shout"))).json()["error"]
        bad_args = (await client.post("/mcp/rpc", json=execute("echo", "echo", {"times": 2}))).json()["error"]
    assert "echo" in unknown_service["data"]["available"]
    assert set(unknown_op["data"]["availableOperations"]) == {"echo", "wipe", "nap", "free"}
    assert bad_args["data"]["errors"][0]["field"] == "message"


async def test_arguments_are_validated_before_permission_is_asked(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()  # no grant at all
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=execute("echo", "echo", {"message": ""}))
    assert response.json()["error"]["code"] == -32602


async def test_the_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    limit = {"per_agent": {"max_requests": 2, "window_ms": 60_000}}
    async with run_gateway(tmp_path / "gw.db", rate_limit=limit) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            for _ in range(2):
                assert (await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))).status_code == 200
            before = await counts(gw)
            response = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))
        after = await counts(gw)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == -32005
    assert error["data"]["limit"] == 2 and error["data"]["windowMs"] == 60_000
    assert error["data"]["identifier"] == f"agent:{agent_id}"
    assert 0 < error["data"]["retryAfterMs"] <= 30_000
    assert after["calls"] == before["calls"] + 1 and after["audit"] == before["audit"]


@pytest.mark.parametrize("rpc_id", [0, "req-7", 3.5, None])
async def test_any_id_is_echoed_including_zero_and_null(gw: RunningGateway, rpc_id: Any) -> None:
    _, token = await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=rpc("mcp.getStatistics", rpc_id=rpc_id))
    assert response.status_code == 200
    assert response.json()["id"] == rpc_id
    assert "result" in response.json()


async def test_a_notification_executes_and_gets_no_body(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    body = execute("echo", "echo", ["quiet"])
    del body["id"]
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=body)
    assert response.status_code == 204
    assert response.content == b""
    await gw.gateway.recorder.flush()
    calls = await gw.gateway.store.recent_calls(1)
    assert calls[0].operation == "echo" and calls[0].status == "success"


async def test_a_batch_answers_each_request_and_skips_notifications(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    notification = execute("echo", "echo", ["n"])
    del notification["id"]
    batch = [
        {**execute("echo", "echo", ["a"]), "id": 1},
        {"jsonrpc": "2.0", "id": 2},  # no method
        notification,
        {**rpc("mcp.nope"), "id": 3},
    ]
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=batch)
        empty = await client.post("/mcp/rpc", json=[])
        only_notifications = await client.post("/mcp/rpc", json=[notification, notification])
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["result"]["data"] == {"echo": "a"}
    assert by_id[2]["error"]["code"] == -32600
    assert by_id[3]["error"]["code"] == -32601
    assert empty.status_code == 400 and empty.json()["error"]["code"] == -32600
    assert only_notifications.status_code == 204


async def test_success_envelope_carries_metadata_that_matches_the_ledger(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi", 3]))
    body = response.json()
    assert response.status_code == 200
    assert body["result"]["status"] == "success"
    assert body["result"]["data"] == {"echo": "hihihi"}
    meta = body["result"]["metadata"]
    assert meta["service"] == "echo" and meta["operation"] == "echo"
    assert meta["tokensUsed"] == ECHO_SPEC.avg_tokens_per_call and meta["cost"] == ECHO_SPEC.cost_per_call
    assert isinstance(meta["executionTime"], int) and meta["timestamp"].endswith("Z")
    await gw.gateway.recorder.flush()
    [row] = await gw.gateway.store.recent_calls(1)
    assert (row.id, row.agent_id, row.tokens, row.cost_usd, row.rpc_id) == (
        meta["callId"], agent_id, meta["tokensUsed"], meta["cost"], "req-1")


@pytest.mark.parametrize("args", [["hi", 2], {"message": "hi", "times": 2}, [{"message": "hi", "times": 2}]])
async def test_positional_named_and_object_arguments_are_the_same_call(gw: RunningGateway, args: Any) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=execute("echo", "echo", args))
    assert response.json()["result"]["data"] == {"echo": "hihi"}


async def test_options_fill_arguments_the_operation_declares(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    body = execute("echo", "echo", ["ab"], options={"times": 2, "limit": 50})
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=body)
    assert response.json()["result"]["data"] == {"echo": "abab"}


async def test_too_many_positional_arguments_are_refused(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/mcp/rpc", json=execute("echo", "echo", ["a", 1, "extra"]))
    assert response.json()["error"]["code"] == -32602


async def test_a_zero_cost_override_stays_zero(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        meta = (await client.post("/mcp/rpc", json=execute("echo", "free"))).json()["result"]["metadata"]
    assert meta["tokensUsed"] == 0 and meta["cost"] == 0


async def test_measured_cost_estimates_tokens_from_the_call_size(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", cost={"mode": "measured", "usd_per_million_tokens": 3.0}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            small = (await client.post("/mcp/rpc", json=execute("echo", "echo", ["x"])))
            big = (await client.post("/mcp/rpc", json=execute("echo", "echo", ["x" * 400, 10])))
    small_meta, big_meta = small.json()["result"]["metadata"], big.json()["result"]["metadata"]
    assert 0 < small_meta["tokensUsed"] < 50
    assert big_meta["tokensUsed"] >= 4000 * 1 / 4  # 4,000 characters came back
    assert big_meta["cost"] == pytest.approx(big_meta["tokensUsed"] * 3.0 / 1_000_000)


async def test_failed_and_denied_calls_cost_nothing_but_are_recorded(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()  # no grant: denied
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        denied = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))
    assert denied.status_code == 403
    await gw.gateway.recorder.flush()
    [row] = await gw.gateway.store.recent_calls(1)
    assert (row.status, row.error_code, row.tokens, row.cost_usd) == ("denied", -32004, 0, 0.0)


async def test_permission_is_denied_without_a_grant_and_says_no_request_was_filed(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        error = (await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))).json()["error"]
        assert error["code"] == -32004
        assert error["data"] == {"service": "echo", "operation": "echo", "agentId": agent_id, "requestId": None,
                                 "status": "denied", "message": error["message"]}
        await gw.grant(agent_id, "echo", "echo")  # one operation only
        assert (await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))).status_code == 200
        assert (await client.post("/mcp/rpc", json=execute("echo", "wipe", ["x"]))).status_code == 403


async def test_an_always_active_service_needs_no_grant(tmp_path: Path) -> None:
    always = dataclasses.replace(ECHO_SPEC, name="echo-always", always_active=True)
    async with run_gateway(tmp_path / "gw.db", extra_specs=(always,)) as gw:
        _, token = await gw.add_agent()
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            response = await client.post("/mcp/rpc", json=execute("echo-always", "echo", ["hi"]))
    assert response.status_code == 200


async def test_an_upstream_timeout_is_reported_as_timeout(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", upstream_timeout_seconds=0.2) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            response = await client.post("/mcp/rpc", json=execute("echo", "nap", [2]))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == -32006


async def test_list_services_capabilities_and_statistics(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))
        services = (await client.post("/mcp/rpc", json=rpc("mcp.listServices"))).json()["result"]
        capabilities = (await client.post("/mcp/rpc", json=rpc("mcp.getCapabilities", {"service": "echo"})))
        missing = (await client.post("/mcp/rpc", json=rpc("mcp.getCapabilities", {})))
        statistics = (await client.post("/mcp/rpc", json=rpc("mcp.getStatistics"))).json()["result"]
    # The envelope existing agents read: {"status": "success", "data": ...} (gateway-protocol.md).
    assert services["status"] == capabilities.json()["result"]["status"] == statistics["status"] == "success"
    listed = {service["name"]: service for service in services["data"]}
    assert list(listed)[:10] == ["postgres", "mem0", "cloudflare", "github", "n8n", "coolify", "minio", "playwright",
                                 "shadcn", "magicui"]
    assert {"name", "version", "description", "location", "status", "capabilities"} <= set(listed["echo"])
    assert listed["echo"]["capabilities"] == ["echo", "wipe", "nap", "free"]
    assert listed["echo"]["status"] != "not_configured"
    assert listed["github"]["status"] == "not_configured" and listed["playwright"]["location"] == "local"
    operations = {op["name"]: op for op in capabilities.json()["result"]["data"]}
    assert operations["wipe"]["risk"] == "destructive"
    assert operations["echo"]["inputSchema"]["properties"]["times"]["maximum"] == 10
    assert operations["echo"]["cost"] == {"avgTokensPerCall": 100, "costPerCall": 0.0003}
    assert missing.json()["error"]["code"] == -32602
    data = statistics["data"]
    assert data["total"] == len(listed) == data["active"] + data["inactive"] + data["error"]
    assert data["serverSide"] + data["local"] == data["total"] and data["local"] == 3
    assert {"name": "echo", "status": listed["echo"]["status"], "location": "server", "capabilities": 4} \
        in data["services"]
    assert data["usage"]["byService"]["echo"]["calls"] == 1


async def test_the_catalog_has_the_existing_numbers_and_needs_a_token(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        anonymous = await client.get("/mcp/catalog")
        catalog = (await client.get("/mcp/catalog", headers={"authorization": f"Bearer {token}"})).json()
        coolify = (await client.get("/mcp/service/cf", headers={"authorization": f"Bearer {token}"})).json()
        unknown = await client.get("/mcp/service/nosuch", headers={"authorization": f"Bearer {token}"})
    assert anonymous.status_code == 401
    by_name = {service["name"]: service for service in catalog["services"]}
    expected = {"postgres": (500, 0.0015, False), "mem0": (200, 0.0006, True), "cloudflare": (300, 0.0009, False),
                "github": (400, 0.0012, False), "n8n": (250, 0.0008, False), "coolify": (200, 0.0006, False),
                "minio": (350, 0.001, False), "playwright": (1000, 0.003, False), "shadcn": (150, 0.0005, False),
                "magicui": (150, 0.0005, False)}
    for name, (tokens, cost, always_active) in expected.items():
        service = by_name[name]
        assert (service["pricing"]["avgTokensPerCall"], service["pricing"]["costPerCall"],
                service["alwaysActive"]) == (tokens, cost, always_active)
    assert by_name["playwright"]["location"] == "local"
    assert by_name["coolify"]["status"] == "not_configured"
    assert coolify["name"] == "cloudflare"  # aliases resolve
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32000


async def test_the_slash_form_answers_like_mcp_execute(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        ok = await client.post("/mcp/execute", json={"command": "/mcp-echo echo 'hello world' 2", "id": 0})
        unknown = await client.post("/mcp/execute", json={"command": "/mcp-nosuch list", "id": 1})
        broken = await client.post("/mcp/execute", json={"command": "/mcp-echo echo 'unclosed", "id": 2})
        not_a_command = await client.post("/mcp/execute", json={"cmd": "x"})
        legacy = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))
    await gw.gateway.recorder.flush()
    vias = [record.via async for record in gw.gateway.store.iter_calls()]
    assert vias == ["slash"] * 4 + ["rpc"]  # how each came in, refusals too
    assert legacy.status_code == 200
    assert ok.status_code == 200
    assert ok.json()["id"] == 0
    assert ok.json()["result"]["data"] == {"echo": "hello worldhello world"}
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == -32000
    assert broken.status_code == 400 and broken.json()["error"]["code"] == -32602
    assert not_a_command.status_code == 400 and not_a_command.json()["error"]["code"] == -32600


async def test_a_chunked_oversize_body_is_refused_without_being_read_whole(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()
    offered = 64 * (1 << 20)  # 64 MiB, far beyond the 1 MiB limit: a server that kept reading would take it all
    sent = 0

    async def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        yield b'{"jsonrpc":"2.0","method":"mcp.listServices","pad":"'
        while sent < offered:
            sent += 65536
            yield b"x" * 65536

    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        try:
            response = await client.post("/mcp/rpc", content=chunks())
        except httpx.HTTPError:  # the server answered and closed while we were still sending
            response = None
    # The server stopped reading at the limit: what we got to send is the limit plus what the sockets buffer.
    assert sent < offered // 4, f"the server read {sent} bytes of a body refused at 1 MiB"
    if response is not None:
        assert response.status_code == 413
        assert response.json()["error"]["code"] == -32600
    await gw.gateway.recorder.flush()
    [row] = await gw.gateway.store.recent_calls(1)
    assert row.error_code == -32600


async def test_an_idle_connection_outlives_the_clients_own_idle_limit(gw: RunningGateway) -> None:
    """httpx drops an idle connection after 5 s; a server that closed it at the same 5 s (uvicorn's default)
    would now and then meet a request sent on it as it closed. The gateway keeps it past that."""
    reader, writer = await asyncio.open_connection(*gw.url.removeprefix("http://").split(":"))
    answers = []
    try:
        for pause in (0, 5.5):
            await asyncio.sleep(pause)
            writer.write(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            answers.append((head.split(b" ")[1], await reader.readexactly(length)))
    finally:
        writer.close()
    assert [status for status, _ in answers] == [b"200", b"200"]


async def test_metrics_use_the_existing_names_with_real_agent_labels(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent(agent_id="deploy-bot")
    await gw.grant(agent_id, "echo")
    async with httpx.AsyncClient(base_url=gw.url) as client:
        await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]),
                          headers={"authorization": f"Bearer {token}"})
        text = (await client.get("/metrics")).text
    assert 'mcp_operations_total{operation="echo",service="echo",status="success"} 1.0' in text
    assert 'mcp_token_usage_total{agent_id="deploy-bot",operation="echo",service="echo"} 100.0' in text
    assert 'mcp_cost_usd_total{agent_id="deploy-bot",service="echo"}' in text
    for name in ("mcp_operation_duration_seconds", "mcp_permission_requests_total", "mcp_rate_limit_hits_total",
                 "mcp_errors_total", "mcp_active_requests", "mcp_service_up"):
        assert name in text


async def test_ready_checks_the_store_and_says_which_check_failed(gw: RunningGateway,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway_core.store import StoreError

    async with httpx.AsyncClient(base_url=gw.url) as client:
        ready = await client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"]["services"]["status"]["echo"] in ("healthy", "unknown")

        async def disk_full() -> None:  # a full disk cannot be arranged here; the store's check says so
            raise StoreError("store not writable: database or disk is full")

        monkeypatch.setattr(gw.gateway.store, "check_writable", disk_full)
        not_ready = await client.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["store"] == {"ok": False, "error": "store not writable: database or disk is full"}


async def test_info_reports_version_uptime_and_counts(gw: RunningGateway) -> None:
    await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        info = (await client.get("/info")).json()
    assert info["counts"]["activeAgents"] == 1
    assert info["counts"]["services"] == 11
    assert info["python"].startswith("3.")


async def test_a_spent_daily_budget_answers_402(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", budget={"daily_usd_per_agent": 0.0005}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            statuses = [(await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))) for _ in range(3)]
    assert [response.status_code for response in statuses] == [200, 200, 402]
    error = statuses[2].json()["error"]
    assert error["code"] == -32010
    assert error["data"]["budgetUsd"] == 0.0005 and error["data"]["spentUsd"] == pytest.approx(0.0006)


async def test_options_null_is_the_same_as_no_options(gw: RunningGateway) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        answer = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"], options=None))
        slash = await client.post("/mcp/execute", json={"command": "/mcp-echo echo hi", "options": None, "id": 2})
    assert answer.status_code == 200 and answer.json()["result"]["data"] == {"echo": "hi"}
    assert slash.status_code == 200 and slash.json()["result"]["data"] == {"echo": "hi"}


@pytest.mark.parametrize("body", [
    b'{"jsonrpc":"2.0","id":1,"method":"mcp.execute","params":' + b"[" * 990 + b"]" * 990 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b'{"jsonrpc":"2.0","id":NaN,"method":"mcp.listServices"}',
    b'{"jsonrpc":"2.0","id":1,"method":"mcp.execute","params":{"service":"echo","operation":"echo","args":[Infinity]}}',
    # Valid JSON syntax, but no text (I-JSON forbids it): an MCP server's pipe or PostgreSQL would fail on it.
    b'{"jsonrpc":"2.0","id":1,"method":"mcp.execute","params":{"service":"echo","operation":"echo",'
    b'"args":{"message":"hi","extra":{"deep":["\\udfff"]}}}}',
], ids=["nested-990", "nested-5000", "nan-id", "infinity-arg", "lone-surrogate"])
async def test_deep_nesting_nan_and_infinity_are_parse_errors(gw: RunningGateway, body: bytes) -> None:
    _, token = await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
        answer = await client.post("/mcp/rpc", content=body)
    assert answer.status_code == 400
    assert json.loads(answer.text)["error"]["code"] == -32700  # valid JSON back: no NaN echoed


async def test_metric_labels_hold_only_names_the_gateway_knows(gw: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for number in range(300):  # no token needed to try
            await client.post("/mcp/rpc", json=execute(f"made-up-{number}", f"op-{number}"))
            await client.post("/mcp/rpc", json=rpc(f"method-{number}"))
        text = (await client.get("/metrics")).text
    assert "made-up" not in text and "method-" not in text and "op-" not in text
    assert 'operation="unknown"' in text
    assert len(text) < 64_000
    assert list(gw.gateway.usage.by_service) == []  # nor does the gateway keep per-name totals for them


async def test_oversized_headers_are_refused_and_recorded(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        answer = await client.post("/mcp/rpc", json=rpc("mcp.listServices"),
                                   headers={"authorization": f"Bearer {token}", "x-agent-id": "a" * (1 << 20)})
    assert answer.status_code == 431 and answer.json()["error"]["code"] == -32600
    await gw.gateway.recorder.flush()
    [row] = await gw.gateway.store.recent_calls(1)
    assert row.error_code == -32600 and row.method == "rpc"
    assert await gw.gateway.store.list_audit() == [event for event in await gw.gateway.store.list_audit()
                                                   if len(json.dumps(event.detail)) < 1000]


async def test_the_audit_log_keeps_a_bounded_agent_id_and_never_a_token(gw: RunningGateway) -> None:
    _, token = await gw.add_agent()
    async with httpx.AsyncClient(base_url=gw.url) as client:
        # Its own token in the wrong header, with a wrong one in the right header: refused and audited.
        await client.post("/mcp/rpc", json=rpc("mcp.listServices"),
                          headers={"authorization": "Bearer mcpa_wrong", "x-agent-id": token})
        await client.post("/mcp/rpc", json=rpc("mcp.listServices"),
                          headers={"authorization": "Bearer mcpa_wrong", "x-agent-id": "b" * 8000})
    await gw.gateway.recorder.flush()
    refusals = [event for event in await gw.gateway.store.list_audit() if event.action == "auth.failed"]
    assert len(refusals) == 2
    for event in refusals:
        assert token not in json.dumps([event.subject, event.detail])
        assert len(event.subject or "") <= 200
    assert refusals[1].subject is not None and refusals[1].subject.startswith("mcpa_")  # said, not kept


@pytest.mark.parametrize("poison", [
    {"jsonrpc": "2.0", "id": 1, "method": [1]},
    {"jsonrpc": "2.0", "id": 1, "method": {"a": 1}},
    {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute", "params": {"service": ["x"], "operation": "y"}},
    {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute", "params": {"service": {"x": 1}, "operation": "y"}},
    {"jsonrpc": "2.0", "id": "\ud800", "method": "mcp.listServices"},
    {"jsonrpc": "2.0", "id": 1, "method": "mcp.\udfff"},
    {"jsonrpc": "2.0", "id": 1, "method": "mcp.execute", "params": {"service": "e\ud800", "operation": "\x1b[2J"}},
    {"jsonrpc": "2.0", "id": 10 ** 40, "method": "mcp.listServices"},
], ids=["method-list", "method-object", "service-list", "service-object", "id-surrogate", "method-surrogate",
        "service-surrogate", "huge-id"])
async def test_no_request_can_stop_the_ledger_or_the_audit_log(gw: RunningGateway, poison: Any) -> None:
    agent_id, token = await gw.add_agent()
    await gw.grant(agent_id, "echo")
    body = json.dumps(poison).encode()  # ensure_ascii keeps lone surrogates as \ud800 escapes, as a client may
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for headers in ({}, {"authorization": f"Bearer {token}"}):  # refused at the door, and after it
            answer = await client.post("/mcp/rpc", content=body, headers=headers)
            assert answer.status_code < 500 and json.loads(answer.text)["jsonrpc"] == "2.0"
        ordinary = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]),
                                     headers={"authorization": f"Bearer {token}"})
        assert ordinary.status_code == 200
        refused = await client.post("/mcp/rpc", json=rpc("mcp.listServices"),
                                    headers={"authorization": "Bearer mcpa_not-a-token"})
        assert refused.status_code == 401
        ready = await client.get("/ready")
    await gw.gateway.recorder.flush()
    rows = await gw.gateway.store.recent_calls(10)
    assert len(rows) == 4 and rows[1].operation == "echo" and rows[1].status == "success"
    assert all(row.method is None or row.method.isprintable() for row in rows)
    audit = await gw.gateway.store.list_audit()
    assert audit[0].action == "auth.failed" and audit[0].subject is None  # the audit log still writes
    assert ready.status_code == 200 and gw.gateway.recorder.set_aside == 0
