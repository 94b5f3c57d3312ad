"""The n8n handler, through the gateway over real HTTP, against an n8n-compatible server that checks every Public
API request against n8n's own OpenAPI file: every operation, workflows started through their webhooks (the
Public API cannot start one), cursor paging, the API key's scopes, and the bugs not to repeat."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway_core.handlers.n8n import N8N_OPERATIONS, SCOPES, N8nHandler
from sandbox.contract import VendorContract, openapi_file
from sandbox.n8n import FakeN8n
from tests.agent_client import ServiceClient
from tests.cli import mcp_console
from tests.servers import RunningGateway, run_gateway, serve_asgi, service_gateway, unexpected

KEY = "n8n-test-key-0123456789"
NIGHTLY = "VzqKEW0ShTXA5vPj"


class QuickN8n(N8nHandler):
    poll_seconds = 0.01  # follows executions without a real wait


@dataclass(kw_only=True)
class N8n(ServiceClient):
    service: str = "n8n"
    fake: FakeN8n
    gateway: RunningGateway


@contextlib.asynccontextmanager
async def n8n_gateway(tmp_path: Path, fake: FakeN8n | None = None, url_suffix: str = "",
                      **settings: Any) -> AsyncIterator[N8n]:
    fake = fake or FakeN8n(KEY)
    async with serve_asgi(fake.app()) as url:
        settings.setdefault("n8n_api_url", url + url_suffix)
        settings.setdefault("n8n_api_key", KEY)
        async with service_gateway(tmp_path / "gw.db", "n8n", handler_classes={"n8n": QuickN8n},
                                   **settings) as (gw, agent_token):
            yield N8n(fake=fake, gateway=gw, url=gw.url, token=agent_token)
    assert fake.violations == [], "requests the real n8n would not accept"


@pytest.fixture
async def n8n(tmp_path: Path) -> AsyncIterator[N8n]:
    async with n8n_gateway(tmp_path) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def every_operation(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[N8n]:
    """One gateway and one n8n for the table below (each case's check reads only what its call changed)."""
    async with n8n_gateway(tmp_path_factory.mktemp("every")) as running:
        yield running


Check = Callable[[Any, FakeN8n], None]
# Every operation: what the agent sends, the request n8n must receive, and what the agent gets back.
OPERATIONS: list[tuple[str, Any, tuple[str, str, dict[str, str]], Check]] = [
    ("execute", ["nightly-report", {"day": "monday"}], ("POST", "/webhook/nightly", {}),
     lambda d, f: (d["operation"] == "workflow_executed" and d["workflowId"] == NIGHTLY
                   and d["status"] == "completed" and d["httpStatus"] == 200
                   and d["data"]["received"] == {"day": "monday"}) or unexpected(d)),
    ("list-workflows", [], ("GET", "/workflows", {"limit": "100"}),
     lambda d, f: (d["operation"] == "list_workflows" and d["total"] == len(f.workflows) and d["nextCursor"] is None
                   and d["workflows"][0] == {"id": NIGHTLY, "name": "nightly-report", "active": True, "nodeCount": 2,
                                             "tags": ["reports"], "createdAt": d["workflows"][0]["createdAt"],
                                             "updatedAt": d["workflows"][0]["updatedAt"]}) or unexpected(d)),
    ("get-workflow", [NIGHTLY], ("GET", f"/workflows/{NIGHTLY}", {}),
     lambda d, f: (d["workflow"]["name"] == "nightly-report" and len(d["workflow"]["nodes"]) == 2) or unexpected(d)),
    ("activate", ["draft"], ("POST", "/workflows/Zz9yX8wV7uT6sR5q/activate", {}),
     lambda d, f: (d == {"operation": "workflow_activated", "workflowId": "Zz9yX8wV7uT6sR5q", "active": True,
                         "message": "Workflow draft activated"} and f.workflows["Zz9yX8wV7uT6sR5q"]["active"])
     or unexpected(d)),
    ("deactivate", ["Zz9yX8wV7uT6sR5q"], ("POST", "/workflows/Zz9yX8wV7uT6sR5q/deactivate", {}),
     lambda d, f: (d["active"] is False and not f.workflows["Zz9yX8wV7uT6sR5q"]["active"]) or unexpected(d)),
    ("get-execution", [100], ("GET", "/executions/100", {"includeData": "false"}),
     lambda d, f: (d["execution"]["status"] == "success" and "data" not in d["execution"]) or unexpected(d)),
    ("get-execution", {"executionId": 101, "includeData": True}, ("GET", "/executions/101", {"includeData": "true"}),
     lambda d, f: d["execution"]["data"]["resultData"]["lastNodeExecuted"] == "Summarise" or unexpected(d)),
    ("list-executions", [NIGHTLY], ("GET", "/executions", {"workflowId": NIGHTLY, "limit": "20"}),
     lambda d, f: (d["workflowId"] == NIGHTLY and d["executions"][-1]["id"] == "100"
                   and d["executions"][-1]["duration"] == 0) or unexpected(d)),
    ("retry-execution", [101], ("POST", "/executions/101/retry", {}),
     lambda d, f: (d["originalExecutionId"] == 101 and f.executions[int(d["newExecutionId"])]["retryOf"] == "101")
     or unexpected(d)),
    ("delete-execution", [100], ("DELETE", "/executions/100", {}),
     lambda d, f: (100 not in f.executions and d["executionId"] == 100) or unexpected(d)),
    ("list-webhooks", [], ("GET", "/workflows", {"active": "true", "limit": "250"}),
     lambda d, f: ({(hook["httpMethod"], hook["path"]) for hook in d["webhooks"]} >= {("POST", "nightly"),
                                                                                       ("GET", "intake/form")}
                   and "old-intake" not in json.dumps(d)
                   and next(hook for hook in d["webhooks"] if hook["path"] == "nightly")["url"].endswith(
                       "/webhook/nightly")) or unexpected(d)),
    ("test-webhook", ["nightly", {"ping": 1}], ("POST", "/webhook/nightly", {}),
     lambda d, f: (d["status"] == 200 and d["url"].endswith("/webhook/nightly") and d["data"]["received"] == {
         "ping": 1}) or unexpected(d)),
    ("health", [], ("GET", "/workflows", {"limit": "1"}),
     lambda d, f: (d["status"] == "healthy" and d["authenticated"] is True and d["latency"] > 0) or unexpected(d)),
    ("stop-execution", [102], ("POST", "/executions/102/stop", {}),
     lambda d, f: (d["status"] == "canceled" and f.executions[102]["status"] == "canceled") or unexpected(d)),
    ("list-failed-executions", [], ("GET", "/executions", {"status": "error", "limit": "20"}),
     lambda d, f: all(execution["status"] == "error" for execution in d["executions"]) or unexpected(d)),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("operation", "args", "expected", "check"), OPERATIONS,
                         ids=[f"{case[0]}-{n}" for n, case in enumerate(OPERATIONS)])
async def test_every_operation_sends_the_right_request_and_answers_with_what_n8n_said(
    every_operation: N8n, operation: str, args: Any, expected: tuple[str, str, dict[str, str]], check: Check
) -> None:
    n8n = every_operation
    data = await n8n.data(operation, args)
    method, path, query = expected
    sent = n8n.fake.requests_to(method, path)
    assert sent, f"n8n received no {method} {path}; it received {[(r.method, r.path) for r in n8n.fake.requests]}"
    assert sent[-1].query == query
    assert sent[-1].headers.get("x-n8n-api-key") == (KEY if sent[-1].api else None)  # never to a webhook
    check(data, n8n.fake)


async def test_every_declared_route_is_in_n8ns_openapi_with_its_parameters_and_scope() -> None:
    contract = VendorContract.load("n8n")
    for declared in N8N_OPERATIONS:
        for route in declared.routes:
            path = route.url_path({name: "1" for name in route.placeholders})
            declared_query = contract.query_parameters(route.method, path)
            assert declared_query is not None, f"{declared.name}: {route.method} {route.path} is not n8n's"
            sent = {entry.partition("=")[0] for entry in route.query} | set(route.fixed_query)
            assert sent <= declared_query, f"{declared.name}: {sent - declared_query} are not n8n's"
    for (method, path), scope in SCOPES.items():
        template = contract.template(method, path.replace("{executionId}", "1").replace("{workflowId}", "w"))
        assert template is not None and contract.spec["paths"][template][method.lower()]["x-required-scope"] == scope


def test_the_project_carries_n8ns_own_openapi_file() -> None:
    carried = openapi_file("n8n")
    assert carried["info"]["x-source"]["repository"] == "n8n-io/n8n"
    shared = Path(__file__).resolve().parents[2] / "shared" / "n8n" / "openapi.json"
    if shared.is_file():
        assert json.loads(shared.read_text()) == carried


@pytest.mark.parametrize("suffix", ["", "/", "/api/v1", "/api/v1/"])
async def test_the_api_url_works_with_or_without_api_v1_and_never_doubles_it(suffix: str) -> None:
    fake = FakeN8n(KEY)
    async with serve_asgi(fake.app()) as url:
        handler = N8nHandler(url + suffix, KEY)
        try:
            operation = handler.operations["list-workflows"]
            await handler.execute(operation, operation.parse_args([]))
            health = await handler.health()
        finally:
            await handler.aclose()
    assert [(r.method, r.path, r.api) for r in fake.requests] == [
        ("GET", "/workflows", True), ("GET", "/healthz", False), ("GET", "/workflows", True)]
    assert health.status == "healthy" and fake.violations == []


async def test_execute_finds_the_webhook_and_refuses_what_cannot_be_started(n8n: N8n) -> None:
    started = await n8n.data("execute-workflow", ["intake", '{"name": "Ada", "age": 36}'])
    no_trigger = await n8n.error("execute", ["cleanup"])
    inactive = await n8n.error("run", ["draft", {}])
    ambiguous = await n8n.error("execute", ["twin"])
    unknown = await n8n.error("execute", ["no-such-workflow"])
    bad_json = await n8n.error("execute", ["intake", "{not json"])
    not_object = await n8n.error("execute", ["intake", "[1, 2]"])
    get = n8n.fake.webhook_calls[0]
    assert started["status"] == "started" and started["data"] == {"message": "Workflow was started"}
    assert (get["method"], get["path"], get["query"], get["body"]) == ("GET", "/webhook/intake/form",
                                                                       {"name": "Ada", "age": "36"}, None)
    assert no_trigger["code"] == -32009 and "no enabled Webhook trigger" in no_trigger["message"]
    assert inactive["code"] == -32009 and "not active" in inactive["message"]
    assert ambiguous["code"] == -32009 and sorted(ambiguous["data"]["candidates"]) == ["Dup1icateAAAAAAA",
                                                                                       "Dup1icateBBBBBBB"]
    assert unknown["code"] == -32007 and unknown["data"] == {"kind": "workflow", "id": "no-such-workflow"}
    assert bad_json["code"] == not_object["code"] == -32602 and "data" in bad_json["message"]
    assert len(n8n.fake.webhook_calls) == 1  # nothing else reached a webhook


async def test_a_webhook_path_never_climbs_out_of_the_webhooks(n8n: N8n) -> None:
    """test-webhook's `../rest/credentials` reached n8n's own REST API on the webhook host."""
    for path in ("../rest/credentials", "a/../../rest", "./x", "nightly/.."):
        refused = await n8n.error("test-webhook", {"path": path, "method": "GET"})
        assert refused["code"] == -32602 and refused["data"]["errors"][0]["field"] == "path", refused
    assert not n8n.fake.webhook_calls and not [r for r in n8n.fake.requests if "rest" in r.path]


async def test_execute_with_wait_follows_the_execution_and_names_the_failing_node(n8n: N8n) -> None:
    done = await n8n.data("execute", [NIGHTLY, {}], wait=30)
    n8n.fake.next_execution_fails = True
    failed = await n8n.error("execute", [NIGHTLY, {}], wait=30)
    assert done["execution"]["status"] == "success" and int(done["execution"]["id"]) > 102
    assert failed["code"] == -32009 and failed["data"]["failedNode"] == "Summarise"
    assert failed["data"]["status"] == "error" and "at node Summarise" in failed["message"]


async def test_the_slash_form_takes_a_word_then_json(n8n: N8n) -> None:
    ran = await n8n.slash_answer('/mcp-n8n execute nightly-report {"dry": true}')
    aliased = await n8n.slash_answer("/mcp-workflow list")
    bad = await n8n.slash_answer("/mcp-n8n execute nightly-report {dry}")
    assert ran["result"]["data"]["data"]["received"] == {"dry": True}
    assert aliased["result"]["data"]["operation"] == "list_workflows"
    assert bad["error"]["code"] == -32602


async def test_lists_page_with_a_cursor_and_list_webhooks_reads_every_page(n8n: N8n) -> None:
    for number in range(255):
        n8n.fake.workflows[f"Hook{number:012d}"] = {**n8n.fake.workflows[NIGHTLY], "id": f"Hook{number:012d}",
                                                    "name": f"hook {number}"}
    first = await n8n.data("list-workflows", limit=100)
    second = await n8n.data("list-workflows", limit=100, cursor=first["nextCursor"])
    hooks = await n8n.data("webhooks")
    too_many = await n8n.error("list-workflows", limit=251)
    assert first["total"] == 100 and first["nextCursor"] and second["workflows"][0]["name"] == "hook 94"
    pages = [r.query for r in n8n.fake.requests_to("GET", "/workflows") if r.query.get("active") == "true"]
    assert hooks["total"] == 257 and len(pages) == 2 and pages[1]["cursor"]
    assert too_many["code"] == -32602


async def test_test_webhook_uses_the_test_url_only_when_asked_and_failures_are_errors(n8n: N8n) -> None:
    not_listening = await n8n.error("test-webhook", ["nightly", {}], test=True)
    n8n.fake.test_listening = True
    listening = await n8n.data("test-workflow", ["nightly", {"x": 1}], test=True)
    get = await n8n.data("test-webhook", {"path": "intake/form", "method": "GET", "data": {"q": "1"}})
    missing = await n8n.error("test-webhook", ["no-such-hook"])
    assert not_listening["code"] == -32007 and "editor" in not_listening["message"]
    assert listening["url"].endswith("/webhook-test/nightly") and listening["data"]["received"] == {"x": 1}
    assert get["data"] == {"message": "Workflow was started"}
    assert missing["code"] == -32007 and missing["data"]["kind"] == "webhook"


async def test_n8ns_errors_become_the_gateways(n8n: N8n) -> None:
    missing = await n8n.error("get-execution", [9999])
    zero = await n8n.error("get-execution", [0])
    succeeded = await n8n.error("retry-execution", [100])
    not_running = await n8n.error("stop-execution", [100])
    no_trigger = await n8n.error("activate", ["Dup1icateAAAAAAA"])
    n8n.fake.publication_blocked = True
    blocked = await n8n.error("activate", ["draft"])
    n8n.fake.publication_blocked = False
    n8n.fake.missing_scopes.add("workflow:activate")
    no_scope = await n8n.error("activate", ["draft"])
    n8n.fake.rate_limited_for = 7
    limited = await n8n.error("list-workflows")
    assert (missing["code"], missing["data"]["kind"], missing["data"]["id"]) == (-32007, "execution", "9999")
    assert zero["code"] == -32602 and not n8n.fake.requests_to("GET", "/executions/0")
    assert succeeded["code"] == not_running["code"] == -32008
    assert no_trigger["code"] == -32009 and "trigger" in no_trigger["message"]
    assert blocked["code"] == -32008 and blocked["data"]["reason"] == "review_pending"
    assert no_scope["code"] == -32001 and "workflow:activate" in no_scope["message"]
    assert limited["code"] == -32005 and limited["data"]["retryAfterMs"] == 7000


async def test_a_refused_key_health_and_a_down_n8n(tmp_path: Path) -> None:
    async with n8n_gateway(tmp_path, n8n_api_key="wrong-key-0123") as n8n:
        refused = await n8n.error("list-workflows")
        degraded = await n8n.data("health")
        n8n.fake.healthy = False
        down = await n8n.error("health")
    assert refused["code"] == -32001 and refused["message"] == "n8n refused the API key: check N8N_API_KEY"
    assert degraded["status"] == "degraded" and degraded["authenticated"] is False
    assert down["code"] == -32001 and down["data"]["status"] == "down"
    async with run_gateway(tmp_path / "gone.db", extra_specs=(), n8n_api_url="http://127.0.0.1:9",
                           n8n_api_key=KEY) as gw:
        agent_id, agent_token = await gw.add_agent()
        await gw.grant(agent_id, "n8n")
        unreachable = await N8n(fake=FakeN8n(KEY), gateway=gw, url=gw.url, token=agent_token).error("list-workflows")
    assert unreachable["code"] == -32001 and "<N8N_API_URL>" in unreachable["message"]


async def test_webhooks_go_to_their_own_url_with_their_own_timeout(tmp_path: Path) -> None:
    fake = FakeN8n(KEY)
    async with serve_asgi(fake.app()) as hooks_url, n8n_gateway(
            tmp_path, url_suffix="/api/v1/", n8n_webhook_url=hooks_url + "/", n8n_webhook_timeout_ms=300) as n8n:
        answered = await n8n.data("execute", [NIGHTLY, {}])
        fake.webhook_delay_seconds = 1.0
        slow = await n8n.error("execute", [NIGHTLY, {}])
    assert answered["status"] == "completed" and not n8n.fake.webhook_calls and len(fake.webhook_calls) == 2
    assert "x-n8n-api-key" not in fake.webhook_calls[0]["headers"]
    assert slow["code"] == -32006


async def test_unconfigured_n8n_names_what_is_missing_and_create_webhook_is_no_operation(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "n.db", extra_specs=(), n8n_api_url="http://127.0.0.1:9") as gw:
        agent_id, agent_token = await gw.add_agent()
        await gw.grant(agent_id, "n8n")
        client = N8n(fake=FakeN8n(KEY), gateway=gw, url=gw.url, token=agent_token)
        unconfigured = await client.error("list-workflows")
        create_webhook = await client.error("create-webhook", ["nightly"])
    assert unconfigured["code"] == -32001 and unconfigured["data"]["missingSettings"] == ["N8N_API_KEY"]
    assert create_webhook["code"] == -32002


async def test_catalog_costs_are_the_specs_per_operation_numbers(n8n: N8n) -> None:
    executed = (await n8n.call("execute", [NIGHTLY, {}])).json()["result"]
    retried = (await n8n.call("retry-execution", [101])).json()["result"]
    assert (executed["metadata"]["tokensUsed"], executed["metadata"]["cost"]) == (300, 0.00096)
    assert (retried["metadata"]["tokensUsed"], retried["metadata"]["cost"]) == (250, 0.0008)  # no cap.: the catalog's


async def test_the_key_never_reaches_a_log_a_result_an_error_the_ledger_or_a_webhook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with n8n_gateway(tmp_path) as n8n:
            for operation, args in [("execute", [NIGHTLY, {"x": 1}]), ("get-execution", [9999]), ("health", []),
                                    ("list-webhooks", []), ("execute", ["cleanup"])]:
                seen.append((await n8n.call(operation, args)).text)
            seen += [json.dumps(call) for call in n8n.fake.webhook_calls]
            db = n8n.gateway.gateway.store.path
    seen.append((await mcp_console("calls", "export", "--format", "jsonl", "--db", db)).stdout)
    seen.append(db.read_bytes().decode("latin-1"))
    seen += [record.getMessage() for record in caplog.records]
    assert seen and not [text for text in seen if KEY in text]
