"""Service configuration, health, and the event stream a console subscribes to."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

import httpx
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway_core import upstream
from gateway_core.catalog import ServiceSpec
from gateway_core.clock import Clock
from gateway_core.config import Settings, load_settings
from gateway_core.events import CallFinished, EventBus, HealthChecked
from gateway_core.health import HealthReport
from gateway_core.operations import Operation, OperationArgs, OperationTable
from gateway_core.ratelimit import RateLimit
from gateway_core.redaction import AgentFacingScrubber
from gateway_core.store import CallRecord
from tests.echo_service import ECHO_SPEC, EchoHandler
from tests.servers import run_gateway, serve_asgi
from tests.test_wire_contract import execute

NEEDY_SPEC = ServiceSpec("needy", "server", False, 10, 0.0001, RateLimit(max_requests=10, window_ms=1000),
                         "needs two settings", (("COOLIFY_API_URL",), ("COOLIFY_API_TOKEN",)))


class NeedyArgs(OperationArgs):
    name: str


class NeedyHandler(EchoHandler):
    """Built from settings like a real handler; answers with what it was configured with."""

    service = "needy"
    operations = OperationTable([Operation("hello", NeedyArgs, "read", "Say hello")])

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        return cls(settings.setting("COOLIFY_API_URL") or "")

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        return {"hello": args.model_dump()["name"], "url": self.url}

    async def health(self) -> HealthReport:
        return HealthReport("healthy", 0.1)

    async def aclose(self) -> None:
        pass


async def test_a_service_missing_settings_is_not_configured_and_names_them(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", extra_specs=(ECHO_SPEC, NEEDY_SPEC),
                           handler_classes={"needy": NeedyHandler}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "needy")
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            needy = await client.post("/mcp/rpc", json=execute("needy", "hello", ["x"]))
            bad_args = await client.post("/mcp/rpc", json=execute("needy", "hello", []))
            echo = await client.post("/mcp/rpc", json=execute("echo", "echo", ["still here"]))
            listed = (await client.get("/mcp/service/needy")).json()
    assert needy.status_code == 503
    error = needy.json()["error"]
    assert error["code"] == -32001
    assert "COOLIFY_API_URL" in error["message"] and "COOLIFY_API_TOKEN" in error["message"]
    assert bad_args.json()["error"]["code"] == -32602  # its operations are known all the same
    assert echo.status_code == 200
    assert listed["status"] == "not_configured"
    assert listed["missingSettings"] == ["COOLIFY_API_URL", "COOLIFY_API_TOKEN"]


async def test_settings_from_the_environment_configure_a_service(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOLIFY_API_URL", "http://coolify.test")
    monkeypatch.setenv("COOLIFY_API_TOKEN", "s3cret-token")
    async with run_gateway(tmp_path / "gw.db", extra_specs=(NEEDY_SPEC,),
                           handler_classes={"needy": NeedyHandler}) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "needy")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            response = await client.post("/mcp/rpc", json=execute("needy", "hello", ["x"]))
            catalog = await client.get("/mcp/catalog")
    assert response.json()["result"]["data"] == {"hello": "x", "url": "http://coolify.test"}
    assert "s3cret-token" not in catalog.text


async def test_subscribers_see_every_finished_call(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        subscription = gw.gateway.events.subscribe()
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            response = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))
            refused = await client.post("/mcp/rpc", json=execute("echo", "nope"))
        events = []
        while len(events) < 2:
            event = await asyncio.wait_for(subscription.get(), 2)
            if isinstance(event, CallFinished):
                events.append(event.record)
        subscription.close()
    assert events[0].id == response.json()["result"]["metadata"]["callId"]
    assert events[1].error_code == refused.json()["error"]["code"] == -32002


async def test_a_health_change_is_published_and_a_down_service_is_refused(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        subscription = gw.gateway.events.subscribe()
        async with asyncio.timeout(5):
            while "echo" not in gw.gateway.health.reports:  # the check made at start
                await asyncio.sleep(0.01)
        handler = gw.gateway.services["echo"].handler
        assert isinstance(handler, EchoHandler)
        handler.client.base_url = "http://127.0.0.1:9"  # nothing listens there: the upstream is gone

        report = await gw.gateway.health.check("echo")
        changes = []
        while (event := subscription.get_nowait()) is not None:
            if isinstance(event, HealthChecked):
                changes.append((event.previous.status if event.previous else None, event.current.status))
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {token}"}) as client:
            refused = await client.post("/mcp/rpc", json=execute("echo", "echo", ["hi"]))
            metrics = (await client.get("/metrics")).text
    assert report.status == "down"
    assert changes[-1] == ("healthy", "down")
    assert refused.status_code == 503 and refused.json()["error"]["data"]["status"] == "down"
    assert 'mcp_service_up{service="echo"} 0.0' in metrics


def _record(n: int) -> CallRecord:
    return CallRecord(str(n), 0.0, "a", "mcp.execute", "s", "o", "success", None, 1.0, 0, 0.0, None)


async def test_a_slow_subscriber_loses_its_oldest_events_and_never_blocks_the_gateway() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=5)
    fast = bus.subscribe(maxsize=100)
    for n in range(20):  # publish never awaits: a full queue drops its oldest event instead
        bus.publish(CallFinished(_record(n)))
    assert slow.dropped == 15 and fast.dropped == 0
    kept = [event.record.id for event in [await slow.get() for _ in range(5)] if isinstance(event, CallFinished)]
    assert kept == ["15", "16", "17", "18", "19"]
    slow.close()
    bus.publish(CallFinished(_record(99)))
    assert slow.get_nowait() is None


async def _client_ports(kind: str, url: str) -> list[int]:
    """The client port the server saw for two calls in a row, then for one after 0.5 s idle, from one client of
    `kind` as the gateway builds it."""
    async def port(get: Callable[[], Awaitable[Any]]) -> int:
        return int((await get()).json()["port"])

    pause_then_again = [0.0, 0.0, 0.5]
    ports = []
    if kind == "aiohttp":
        upstream_client = upstream.UpstreamClient(url)
        try:
            for pause in pause_then_again:
                await asyncio.sleep(pause)
                ports.append(await port(lambda: upstream_client.request("GET", "/port")))
        finally:
            await upstream_client.aclose()
        return ports
    library = httpx if kind == "httpx" else httpx2
    async with library.AsyncClient(limits=upstream.pooled_limits(library.Limits)) as client:
        for pause in pause_then_again:
            await asyncio.sleep(pause)
            ports.append(await port(lambda: client.get(f"{url}/port")))
    return ports


@pytest.mark.parametrize("kind", ["aiohttp", "httpx", "httpx2"])
async def test_an_upstream_connection_idle_past_the_limit_is_not_reused(monkeypatch: pytest.MonkeyPatch,
                                                                         kind: str) -> None:
    """A server closes an idle keep-alive connection after some seconds (uvicorn, Node: 5); reusing one at that
    moment fails the call. Our clients of others' servers (handlers' upstreams with aiohttp, the orchestrator
    with httpx, MCP servers with httpx2) drop their idle connections first, and keep reusing busy ones."""
    monkeypatch.setattr(upstream, "IDLE_CONNECTION_SECONDS", 0.3)

    async def client_port(request: Request) -> JSONResponse:
        assert request.client is not None
        return JSONResponse({"port": request.client.port})

    async with serve_asgi(Starlette(routes=[Route("/port", client_port)])) as url:
        ports = await _client_ports(kind, url)
    assert ports[0] == ports[1], "a connection in use was not reused"
    assert ports[2] != ports[1], "a connection idle past the limit was reused"


async def test_a_redirect_to_another_origin_is_followed_without_our_credentials() -> None:
    """aiohttp takes only Authorization off a request redirected elsewhere: mem0's X-API-Key and n8n's
    X-N8N-API-KEY went along to whatever host a redirect named."""
    heard: list[tuple[str, str, str | None, bytes]] = []

    async def record(request: Request) -> JSONResponse:
        heard.append((request.method, request.url.path, request.headers.get("x-api-key"), await request.body()))
        return JSONResponse({"at": request.url.path})

    async with serve_asgi(Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])) as elsewhere:
        other_origin = elsewhere.replace("127.0.0.1", "localhost")  # another host name: another origin

        async def redirect(request: Request) -> Response:
            target, status = request.query_params["to"], int(request.query_params.get("status", "302"))
            return Response(status_code=status, headers={"location": target})

        async def own(request: Request) -> JSONResponse:
            heard.append((request.method, request.url.path, request.headers.get("x-api-key"), await request.body()))
            return JSONResponse({"at": "own"})

        def loop(request: Request) -> Response:
            return Response(status_code=302, headers={"location": "/loop"})

        def malformed(request: Request) -> Response:
            return Response(status_code=302, headers={"location": "http://h:99999/"})

        app = Starlette(routes=[Route("/go", redirect, methods=["GET", "POST"]), Route("/malformed", malformed),
                                Route("/own", own, methods=["GET", "POST"]), Route("/loop", loop)])
        async with serve_asgi(app) as origin:
            client = upstream.UpstreamClient(origin, {"X-API-Key": "key-for-origin-only"})
            try:
                away = await client.request("GET", "/go", params={"to": f"{other_origin}/blob?sig=1"})
                home = await client.request("GET", "/go", params={"to": "/own"})
                kept = await client.request("POST", "/go", params={"to": "/own", "status": "307"},
                                            json_body={"kept": True})
                seen_other = await client.request("POST", "/go", params={"to": "/own", "status": "303"},
                                                  json_body={"dropped": True})
                with pytest.raises(upstream.UpstreamConnectionError, match="redirected more than 5 times"):
                    await client.request("GET", "/loop")
                with pytest.raises(upstream.UpstreamConnectionError, match="redirected to a malformed address"):
                    await client.request("GET", "/malformed")
            finally:
                await client.aclose()
    assert away.json() == {"at": "/blob"} and home.json() == {"at": "own"}
    assert heard[0] == ("GET", "/blob", None, b"")  # the other origin: no key
    assert heard[1] == ("GET", "/own", "key-for-origin-only", b"")  # the same origin: the key goes along
    assert heard[2] == ("POST", "/own", "key-for-origin-only", b'{"kept": true}') and kept.status == 200  # 307
    assert heard[3] == ("GET", "/own", "key-for-origin-only", b"") and seen_other.status == 200  # 303: a GET


def test_secrets_and_addresses_of_nested_settings_are_taken_out_of_what_agents_read() -> None:
    """Only top-level settings were known: a configured database's URL (its password, its host) came through."""
    settings = load_settings(None, postgres={"databases": {"analytics": {
        "url": "postgresql://reader:pw-7f3e91@db.internal:6432/analytics"}}},
        mcp_servers={"docs": {"url": "http://docs.internal:8000/mcp"}})
    scrubber = AgentFacingScrubber.from_settings(settings, ["filled-key-2b9d"])
    said = scrubber.text("connect to db.internal:6432 as reader with pw-7f3e91 failed; docs.internal:8000/mcp and "
                         "filled-key-2b9d refused")
    assert "pw-7f3e91" not in said and "db.internal" not in said and "docs.internal" not in said
    assert "filled-key-2b9d" not in said and "<MCP_SERVERS.DOCS.URL>" in said, said
