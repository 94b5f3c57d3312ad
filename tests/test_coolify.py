"""The Coolify handler, through the gateway over real HTTP, against a Coolify-compatible server that checks
every request against Coolify's own OpenAPI file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest

from gateway_core.handlers.coolify import (
    COOLIFY_OPERATIONS,
    TOKEN_REFUSED,
    CoolifyHandler,
    CoolifyOperation,
    CoolifyRoute,
)
from sandbox.coolify import FakeCoolify, coolify_contract
from tests.cli import mcp_console
from tests.servers import RunningGateway, run_gateway, serve_asgi, service_gateway, unexpected

TOKEN = "coolify-test-token"


@dataclass
class Coolify:
    fake: FakeCoolify
    url: str
    gateway: RunningGateway
    agent_token: str

    async def call(self, operation: str, args: Any = None, **options: Any) -> httpx.Response:
        params: dict[str, Any] = {"service": "coolify", "operation": operation, "args": args or []}
        if options:
            params["options"] = options
        async with httpx.AsyncClient(base_url=self.gateway.url, timeout=30,
                                     headers={"authorization": f"Bearer {self.agent_token}"}) as client:
            return await client.post("/mcp/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "mcp.execute",
                                                       "params": params})

    async def data(self, operation: str, args: Any = None) -> Any:
        response = await self.call(operation, args)
        assert response.status_code == 200, response.text
        return response.json()["result"]["data"]

    async def error(self, operation: str, args: Any = None) -> dict[str, Any]:
        response = await self.call(operation, args)
        body = response.json()
        assert "error" in body, body
        error: dict[str, Any] = body["error"]
        error["http"] = response.status_code
        return error


@contextlib.asynccontextmanager
async def coolify_gateway(tmp_path: Path, fake: FakeCoolify | None = None, url_suffix: str = "",
                          token: str = TOKEN, **settings: Any) -> AsyncIterator[Coolify]:
    fake = fake or FakeCoolify(TOKEN, stage_seconds=0.1)
    async with serve_asgi(fake.app()) as url:
        settings.setdefault("coolify_poll_seconds", 0.05)
        async with service_gateway(tmp_path / "gw.db", "coolify", coolify_api_url=url + url_suffix,
                                   coolify_api_token=token, **settings) as (gw, agent_token):
            yield Coolify(fake, url, gw, agent_token)
    assert fake.violations == [], "requests the real Coolify would not accept"


@pytest.fixture
async def coolify(tmp_path: Path) -> AsyncIterator[Coolify]:
    async with coolify_gateway(tmp_path) as running:
        yield running


# Every operation: what the agent sends, the request Coolify must receive, and what the agent gets back.
Check = Callable[[Any, FakeCoolify], None]
OPERATIONS: list[tuple[str, Any, tuple[str, str, dict[str, str]], Check]] = [
    ("list-applications", [], ("GET", "/applications", {}),
     lambda d, f: (d["operation"] == "list_applications" and d["count"] == 4
                   and d["applications"][0]["uuid"] == "app1") or unexpected(d)),
    ("list-applications", {"tag": "frontend"}, ("GET", "/applications", {"tag": "frontend"}),
     lambda d, f: d["count"] == 1 or unexpected(d)),
    ("get-application", ["app1"], ("GET", "/applications/app1", {}),
     lambda d, f: d["application"]["name"] == "web" or unexpected(d)),
    ("deploy-application", ["app2", True], ("POST", "/deploy", {"uuid": "app2", "force": "true"}),
     lambda d, f: (d["deployment_uuid"] in f.deployments and d["deployments"][0]["resource_uuid"] == "app2")
     or unexpected(d)),
    ("start-application", {"uuid": "app2", "force": False}, ("POST", "/applications/app2/start", {"force": "false"}),
     lambda d, f: (f.applications["app2"]["status"] == "running:healthy" and d["deployment_uuid"]) or unexpected(d)),
    ("stop-application", ["app1"], ("POST", "/applications/app1/stop", {}),
     lambda d, f: (f.applications["app1"]["status"] == "exited:unhealthy" and "stopping" in d["message"])
     or unexpected(d)),
    ("restart-application", ["app1"], ("POST", "/applications/app1/restart", {}),
     lambda d, f: d["deployment_uuid"] in f.deployments or unexpected(d)),
    ("list-databases", [], ("GET", "/databases", {}), lambda d, f: d["databases"][0]["uuid"] == "db1" or unexpected(d)),
    ("create-database", [{"type": "redis", "server_uuid": "srv1", "project_uuid": "prj1",
                          "environment_name": "production", "environment_uuid": "env1", "name": "cache",
                          "settings": {"redis_password": "pw"}}], ("POST", "/databases/redis", {}),
     lambda d, f: (f.databases[d["uuid"]]["name"] == "cache" and d["internal_db_url"]) or unexpected(d)),
    ("list-servers", [], ("GET", "/servers", {}),
     lambda d, f: d["servers"][0]["name"] == "main-server" or unexpected(d)),
    ("create-server", {"name": "edge", "ip": "10.0.0.9", "private_key_uuid": "key1"}, ("POST", "/servers", {}),
     lambda d, f: f.servers[d["uuid"]]["ip"] == "10.0.0.9" or unexpected(d)),
    ("validate-server", ["srv1"], ("POST", "/servers/srv1/validate", {}),
     lambda d, f: (d["message"] == "Validation started." and "valid" not in d) or unexpected(d)),
    ("list-projects", [], ("GET", "/projects", {}), lambda d, f: d["projects"][0]["uuid"] == "prj1" or unexpected(d)),
    ("create-project", ["billing", "invoices"], ("POST", "/projects", {}),
     lambda d, f: f.projects[d["uuid"]]["description"] == "invoices" or unexpected(d)),
    ("list-services", [], ("GET", "/services", {}), lambda d, f: d["services"][0]["uuid"] == "svc1" or unexpected(d)),
    ("start-service", ["svc1"], ("POST", "/services/svc1/start", {}),
     lambda d, f: f.services["svc1"]["status"] == "running:healthy" or unexpected(d)),
    ("stop-service", {"uuid": "svc1", "docker_cleanup": True}, ("POST", "/services/svc1/stop",
                                                                 {"docker_cleanup": "true"}),
     lambda d, f: f.services["svc1"]["status"] == "exited" or unexpected(d)),
    ("get-version", [], ("GET", "/version", {}), lambda d, f: d == {"operation": "get_version", "version": "4.3.11"}
     or unexpected(d)),
    ("get-application-logs", ["app1", 3], ("GET", "/applications/app1/logs", {"lines": "3"}),
     lambda d, f: d["logs"].count("\n") == 2 or unexpected(d)),
    ("list-deployments", [], ("GET", "/deployments", {}), lambda d, f: d["count"] == 0 or unexpected(d)),
    ("list-application-deployments", ["app1", 0, 5], ("GET", "/deployments/applications/app1",
                                                       {"skip": "0", "take": "5"}),
     lambda d, f: (d["count"] == 0 and d["deployments"] == []) or unexpected(d)),
    ("list-application-envs", ["app1"], ("GET", "/applications/app1/envs", {}),
     lambda d, f: (d["envs"][0]["value"] == "********" and "hunter2" not in json.dumps(d)) or unexpected(d)),
    ("list-application-envs", {"uuid": "app1", "reveal": True}, ("GET", "/applications/app1/envs", {}),
     lambda d, f: "hunter2" in d["envs"][0]["value"] or unexpected(d)),
    ("get-database", ["db1"], ("GET", "/databases/db1", {}),
     lambda d, f: d["database"]["uuid"] == "db1" or unexpected(d)),
    ("start-database", ["db1"], ("POST", "/databases/db1/start", {}),
     lambda d, f: f.databases["db1"]["status"] == "running:healthy" or unexpected(d)),
    ("stop-database", ["db1"], ("POST", "/databases/db1/stop", {}),
     lambda d, f: f.databases["db1"]["status"] == "exited" or unexpected(d)),
    ("restart-database", ["main-db"], ("POST", "/databases/db1/restart", {}),
     lambda d, f: (d["uuid"] == "db1" and d["message"] == "Database restarting request queued.") or unexpected(d)),
    ("get-database-logs", ["db1"], ("GET", "/databases/db1/logs", {"lines": "100"}),
     lambda d, f: "log line 100" in d["logs"] or unexpected(d)),
    ("get-service", ["plausible"], ("GET", "/services/svc1", {}),
     lambda d, f: d["service"]["uuid"] == "svc1" or unexpected(d)),
    ("restart-service", ["svc1"], ("POST", "/services/svc1/restart", {}),
     lambda d, f: d["message"] == "Service restaring request queued." or unexpected(d)),  # Coolify's spelling
    ("get-service-logs", ["svc1", "clickhouse"], ("GET", "/services/svc1/logs",
                                                  {"sub_service_name": "clickhouse", "lines": "100"}),
     lambda d, f: d["logs"] == "clickhouse: ready" or unexpected(d)),
    ("get-server", ["main-server"], ("GET", "/servers/srv1", {}), lambda d, f: d["server"]["ip"] or unexpected(d)),
    ("get-server-resources", ["srv1"], ("GET", "/servers/srv1/resources", {}),
     lambda d, f: d["count"] == 6 or unexpected(d)),
    ("get-server-domains", ["srv1"], ("GET", "/servers/srv1/domains", {}),
     lambda d, f: d["domains"][0]["ip"] == "10.0.0.5" or unexpected(d)),
    ("list-resources", [], ("GET", "/resources", {}), lambda d, f: d["count"] == 6 or unexpected(d)),
    ("list-private-keys", [], ("GET", "/security/keys", {}),
     lambda d, f: (d["private_keys"][0]["fingerprint"] == "SHA256:fake" and "PRIVATE KEY" not in json.dumps(d))
     or unexpected(d)),
    ("get-project", ["kids-ascension"], ("GET", "/projects/prj1", {}),
     lambda d, f: d["project"]["uuid"] == "prj1" or unexpected(d)),
    ("list-environments", ["prj1"], ("GET", "/projects/prj1/environments", {}),
     lambda d, f: d["environments"][0]["name"] == "production" or unexpected(d)),
    ("rollback-application", ["app1"], ("GET", "/applications/app1/rollback-images", {}),
     lambda d, f: d["images"][0]["tag"] == "abc123" or unexpected(d)),
    ("rollback-application", ["app1", "def456"], ("POST", "/applications/app1/rollback", {}),
     lambda d, f: d["deployment_uuid"] in f.deployments or unexpected(d)),
]


@pytest.mark.parametrize(("operation", "args", "expected", "check"), OPERATIONS,
                         ids=[f"{case[0]}-{n}" for n, case in enumerate(OPERATIONS)])
async def test_every_operation_sends_the_right_request_and_answers_with_what_coolify_said(
    coolify: Coolify, operation: str, args: Any, expected: tuple[str, str, dict[str, str]], check: Check
) -> None:
    data = await coolify.data(operation, args)
    method, path, query = expected
    sent = coolify.fake.requests_to(method, path)
    received = [(r.method, r.path) for r in coolify.fake.requests]
    assert sent, f"Coolify received no {method} {path}; it received {received}"
    assert sent[-1].query == query
    assert sent[-1].authorization == f"Bearer {TOKEN}"
    check(data, coolify.fake)


async def test_the_eighteen_and_the_extras_are_all_declared() -> None:
    names = {declared.name for declared in COOLIFY_OPERATIONS}
    eighteen = {"list-applications", "get-application", "deploy-application", "start-application",
                "stop-application", "restart-application", "list-databases", "create-database", "list-servers",
                "create-server", "validate-server", "list-projects", "create-project", "list-services",
                "start-service", "stop-service", "get-version", "health"}
    assert eighteen <= names
    assert len(names) == len(COOLIFY_OPERATIONS) == 40
    risks = {declared.name: declared.risk for declared in COOLIFY_OPERATIONS}
    assert {name for name, risk in risks.items() if risk == "destructive"} == {
        "stop-application", "stop-service", "stop-database"}


def test_the_project_carries_coolifys_own_openapi_file() -> None:
    contract = coolify_contract()  # package data: no ../shared needed
    assert contract.spec["info"]["title"] == "Coolify" and "/applications/{uuid}/restart" in contract.spec["paths"]
    shared = Path(__file__).resolve().parents[2] / "shared" / "coolify" / "openapi.json"
    if shared.is_file():  # beside a checkout that has it, the copy must be the same file
        assert json.loads(shared.read_text()) == contract.spec


def _concrete_paths(declared: CoolifyOperation, route: CoolifyRoute) -> list[str]:
    """The route's path with each placeholder that names a choice of values (a Literal) filled with each."""
    paths = [route.path]
    for placeholder in re.findall(r"\{(\w+)\}", route.path):
        choices = get_args(declared.args_model.model_fields[placeholder].annotation)
        if choices:
            paths = [path.replace("{" + placeholder + "}", choice) for path in paths for choice in choices]
    return paths


def test_every_declared_route_exists_in_coolifys_openapi_with_its_method_and_required_fields() -> None:
    contract = coolify_contract()
    for declared in COOLIFY_OPERATIONS:
        fields = set(declared.args_model.model_fields)
        for route in declared.routes:
            assert set(re.findall(r"\{(\w+)\}", route.path)) <= fields
            assert set(route.query) <= fields and set(route.body) <= fields
            for path in _concrete_paths(declared, route):
                template = contract.template_for(path)
                assert template is not None, f"{declared.name}: {path} is not in Coolify's API"
                spec = contract.operation(route.method, template)
                assert spec is not None, f"{declared.name}: Coolify's {template} has no {route.method}"
                for parameter in spec.get("parameters", []):
                    if parameter["in"] == "query" and parameter.get("required"):
                        assert parameter["name"] in route.query, f"{declared.name}: {parameter['name']}"
                schema = spec.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
                missing = set(schema.get("required", [])) - set(route.body)
                assert not missing, f"{declared.name}: required body fields {missing} are never sent"
                unknown = set(route.body) - set(schema.get("properties", {}))
                assert not unknown, f"{declared.name}: {unknown} are not fields of {template}"


async def test_the_slash_form_reaches_the_same_operations(coolify: Coolify) -> None:
    async with httpx.AsyncClient(base_url=coolify.gateway.url,
                                 headers={"authorization": f"Bearer {coolify.agent_token}"}) as client:
        restart = await client.post("/mcp/execute", json={"command": "/mcp-coolify restart-application web"})
        deploy = await client.post("/mcp/execute", json={"command": "/mcp-coolify deploy-application app2 true"})
    assert restart.json()["result"]["data"]["uuid"] == "app1"
    assert coolify.fake.requests_to("POST", "/deploy")[-1].query == {"uuid": "app2", "force": "true"}
    assert deploy.json()["result"]["data"]["deployment_uuid"]


async def test_names_resolve_to_uuids_and_ambiguous_or_unknown_names_are_refused(coolify: Coolify) -> None:
    assert (await coolify.data("get-application", ["web"]))["application"]["uuid"] == "app1"
    ambiguous = await coolify.error("restart-application", ["worker"])
    assert ambiguous["code"] == -32009 and sorted(ambiguous["data"]["candidates"]) == ["app3", "app4"]
    unknown = await coolify.error("get-application", ["nope"])
    assert unknown["code"] == -32007 and unknown["data"] == {"kind": "application", "uuid": "nope"}
    assert not coolify.fake.requests_to("POST", "/applications/worker/restart")[1:]


async def test_an_argument_is_one_segment_of_the_path_and_never_a_step(coolify: Coolify) -> None:
    """A uuid went into the path as it was: `../security/keys#` made a get-application grant read Coolify's private
    keys with the gateway's token, and `app1/envs` an application's unmasked variables."""
    for hostile in ("app1/envs", "../security/keys#", "../databases/db1/stop?x=", "app1%2Fenvs"):
        unknown = await coolify.error("get-application", [hostile])
        assert unknown["code"] == -32007, unknown
    for step in ("..", ".", ""):
        refused = await coolify.error("restart-application", [step])
        assert refused["code"] == -32602 and refused["data"]["errors"][0]["field"] == "uuid", refused
    paths = [r.path for r in coolify.fake.requests]
    assert "/applications/app1%2Fenvs" in paths and "/applications/app1%252Fenvs" in paths
    assert all(path.startswith("/applications") and path.count("/") <= 2 for path in paths
               if path not in ("/api/health", "/version")), paths
    assert not [r for r in coolify.fake.requests if r.method == "POST"]


async def test_deploy_with_wait_follows_the_deployment_to_its_end(coolify: Coolify) -> None:
    finished = await coolify.data("deploy-application", {"uuid": "app1", "wait": 10})
    assert finished["deployment"] == {"deployment_uuid": finished["deployment_uuid"], "status": "finished"}
    coolify.fake.next_deployment_fails = True
    failed = await coolify.error("restart-application", {"uuid": "app1", "wait": 10})
    assert failed["code"] == -32009 and failed["data"]["status"] == "failed"
    assert failed["data"]["log_tail"][-1] == "ERROR: build failed: exit code 1"


async def test_a_deployment_can_be_cancelled_only_before_it_finishes(tmp_path: Path) -> None:
    async with coolify_gateway(tmp_path, FakeCoolify(TOKEN, stage_seconds=5)) as coolify:
        queued = await coolify.data("restart-application", ["app1"])
        running = await coolify.data("list-deployments")
        cancelled = await coolify.data("cancel-deployment", [queued["deployment_uuid"]])
        again = await coolify.error("cancel-deployment", [queued["deployment_uuid"]])
        deployment = await coolify.data("get-deployment", [queued["deployment_uuid"]])
    assert running["count"] == 1
    assert cancelled["status"] == "cancelled-by-user"
    assert again["code"] == -32009 and "Current status: cancelled-by-user" in again["message"]
    assert deployment["deployment"]["status"] == "cancelled-by-user"


@pytest.mark.parametrize("suffix", ["", "/", "/api/v1", "/api/v1/"])
async def test_the_api_url_works_with_or_without_api_v1_and_a_trailing_slash(suffix: str) -> None:
    fake = FakeCoolify(TOKEN)
    async with serve_asgi(fake.app()) as url:
        handler = CoolifyHandler(url + suffix, TOKEN)
        try:
            operation = handler.operations["list-servers"]
            await handler.execute(operation, operation.parse_args([]))
        finally:
            await handler.aclose()
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/servers")]
    assert fake.violations == []


async def test_validate_server_falls_back_to_get_on_coolify_before_4_2_and_remembers(tmp_path: Path) -> None:
    async with coolify_gateway(tmp_path, FakeCoolify(TOKEN, validate_get_only=True)) as coolify:
        first = await coolify.data("validate-server", ["srv1"])
        second = await coolify.data("validate-server", ["srv1"])
        methods = [r.method for r in coolify.fake.requests if r.path == "/servers/srv1/validate"]
    assert first["message"] == second["message"] == "Validation started."
    assert methods == ["POST", "GET", "GET"]


async def test_coolifys_errors_become_the_gateways(tmp_path: Path) -> None:
    async with coolify_gateway(tmp_path) as coolify:
        not_found = await coolify.error("get-database", ["db-missing"])
        invalid = await coolify.error("create-server", {"name": "x", "ip": "10.0.0.1", "private_key_uuid": "k9"})
        coolify.fake.rate_limited_for = 30
        limited = await coolify.error("list-servers")
        coolify.fake.rate_limited_for = 0
        coolify.fake.failure_rate = 1.0
        broken = await coolify.error("list-servers")
    assert (not_found["code"], not_found["http"]) == (-32007, 404)
    assert not_found["data"] == {"kind": "database", "uuid": "db-missing"}
    assert (invalid["code"], invalid["http"]) == (-32009, 400)
    assert invalid["data"]["errors"] == {"private_key_uuid": ["Private key not found."]}
    assert (limited["code"], limited["http"]) == (-32005, 429) and limited["data"]["retryAfterMs"] == 30_000
    assert (broken["code"], broken["http"]) == (-32001, 503) and "500" in broken["message"]


async def test_a_refused_token_is_a_configuration_problem(tmp_path: Path) -> None:
    async with coolify_gateway(tmp_path, token="wrong-token") as coolify:
        refused = await coolify.error("list-servers")
    assert refused["code"] == -32001 and refused["message"] == TOKEN_REFUSED
    fake = FakeCoolify(TOKEN, read_only_token="read-only-token")
    async with coolify_gateway(tmp_path / "ro", fake, token="read-only-token") as coolify:
        assert (await coolify.data("list-servers"))["count"] == 1
        forbidden = await coolify.error("stop-application", ["app1"])
    assert forbidden["code"] == -32001 and forbidden["data"]["upstreamStatus"] == 403


async def error_from(db: Path, coolify_api_url: str, operation: str) -> dict[str, Any]:
    """The error an agent gets from `operation` with Coolify configured at an address that fails."""
    async with run_gateway(db, extra_specs=(), coolify_api_url=coolify_api_url, coolify_api_token=TOKEN) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "coolify")
        return await Coolify(FakeCoolify(TOKEN), "", gw, token).error(operation)


async def test_unreachable_unresolvable_and_slow_coolify(tmp_path: Path) -> None:
    refused = await error_from(tmp_path / "a.db", "http://127.0.0.1:9", "list-servers")
    assert refused["code"] == -32001 and "cannot connect" in refused["message"]
    unresolved = await error_from(tmp_path / "b.db", "http://coolify.invalid", "list-servers")
    assert unresolved["code"] == -32001 and "cannot resolve <COOLIFY_API_URL>" in unresolved["message"]
    assert "COOLIFY_API_URL" in unresolved["message"]
    slow = FakeCoolify(TOKEN, delay_seconds=1.0)
    async with coolify_gateway(tmp_path / "c", slow, coolify_timeout_seconds=0.2) as coolify:
        timed_out = await coolify.error("list-servers")
    assert (timed_out["code"], timed_out["http"]) == (-32006, 504)


async def test_health_is_healthy_degraded_or_down_and_down_is_an_error(tmp_path: Path) -> None:
    async with coolify_gateway(tmp_path) as coolify:
        healthy = await coolify.data("health")
    assert healthy["status"] == "healthy" and healthy["latency_ms"] > 0 and "4.3.11" in healthy["message"]
    async with coolify_gateway(tmp_path / "d", token="wrong-token") as coolify:
        degraded = await coolify.data("health")
        report = await coolify.gateway.gateway.health.check("coolify")
    assert degraded["status"] == "degraded" and report.status == "degraded"
    handler = CoolifyHandler("http://127.0.0.1:9", TOKEN)
    try:
        down = await handler.health()
    finally:
        await handler.aclose()
    assert down.status == "down"
    error = await error_from(tmp_path / "e.db", "http://127.0.0.1:9", "health")
    assert error["code"] == -32001 and error["data"]["status"] == "down"


async def test_the_token_never_reaches_a_log_a_result_an_error_or_the_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with coolify_gateway(tmp_path) as coolify:
            for operation, args in [("list-servers", []), ("get-application", ["nope"]), ("health", []),
                                    ("create-server", {"name": "x", "ip": "1.2.3.4", "private_key_uuid": "k9"}),
                                    ("list-private-keys", [])]:
                seen.append((await coolify.call(operation, args)).text)
            async with httpx.AsyncClient(base_url=coolify.gateway.url,
                                         headers={"authorization": f"Bearer {coolify.agent_token}"}) as client:
                seen.append((await client.get("/mcp/catalog")).text)
                seen.append((await client.get("/metrics")).text)
            db = coolify.gateway.gateway.store.path
    seen.append((await mcp_console("calls", "export", "--format", "jsonl", "--db", db)).stdout)
    seen.append(db.read_bytes().decode("latin-1"))
    seen += [record.getMessage() for record in caplog.records]
    assert seen and not [text for text in seen if TOKEN in text]


async def test_a_held_wait_does_not_block_other_calls(tmp_path: Path) -> None:
    async with coolify_gateway(tmp_path, FakeCoolify(TOKEN, stage_seconds=0.5)) as coolify:
        waiting = asyncio.create_task(coolify.data("deploy-application", {"uuid": "app1", "wait": 10}))
        await asyncio.sleep(0.1)
        quick = await coolify.data("list-servers")
        assert not waiting.done()
        finished = await waiting
    assert quick["count"] == 1 and finished["deployment"]["status"] == "finished"


def _slash(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


SLASH_CASES = [case for case in OPERATIONS
               if isinstance(case[1], list) and all(isinstance(arg, str | int | bool) for arg in case[1])]


@pytest.mark.parametrize(("operation", "args", "expected", "check"), SLASH_CASES,
                         ids=[f"{case[0]}-{n}" for n, case in enumerate(SLASH_CASES)])
async def test_every_operation_works_in_the_slash_form_too(
    coolify: Coolify, operation: str, args: list[Any], expected: tuple[str, str, dict[str, str]], check: Check
) -> None:
    command = " ".join(["/mcp-coolify", operation, *map(_slash, args)])
    async with httpx.AsyncClient(base_url=coolify.gateway.url,
                                 headers={"authorization": f"Bearer {coolify.agent_token}"}) as client:
        response = await client.post("/mcp/execute", json={"command": command, "id": "s"})
    assert response.status_code == 200, response.text
    method, path, query = expected
    assert coolify.fake.requests_to(method, path)[-1].query == query
    check(response.json()["result"]["data"], coolify.fake)


async def test_credentials_in_the_api_url_never_reach_an_error(tmp_path: Path) -> None:
    error = await error_from(tmp_path / "u.db", "http://admin:s3cret@127.0.0.1:9", "list-servers")
    assert error["code"] == -32001 and "s3cret" not in json.dumps(error)
    # The agent is told which setting to look at, never the internal address (the operator's log has it).
    assert "127.0.0.1" not in json.dumps(error) and "<COOLIFY_API_URL>" in error["message"]


async def test_an_upstream_that_echoes_our_request_never_hands_the_agent_our_token(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo_headers(request: Request) -> JSONResponse:  # a misbehaving Coolify-compatible server
        headers = dict(request.headers)
        return JSONResponse({"message": f"rejected: {headers}", "errors": {"request": headers,
                                                                            "url": str(request.url)}}, 422)

    echoing = Starlette(routes=[Route("/{path:path}", echo_headers, methods=["GET", "POST"])])
    async with serve_asgi(echoing) as url:
        error = await error_from(tmp_path / "echo.db", url, "list-servers")
    text = json.dumps(error)
    assert error["code"] == -32009 and "rejected" in error["message"]
    assert TOKEN not in text and "Bearer ********" in text
    assert url.removeprefix("http://") not in text
