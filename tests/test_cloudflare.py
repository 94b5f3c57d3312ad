"""The Cloudflare handler, through the gateway over real HTTP, against a Cloudflare-compatible server that checks
every request against Cloudflare's own OpenAPI file (its `$ref`s and the DNS record's oneOf per type resolved):
every operation, zones by id or name, updates that change only what they name, the envelope and its error codes,
analytics through GraphQL, and the bugs not to repeat."""

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

from gateway_core.clock import Clock, FrozenClock
from gateway_core.handlers.cloudflare import CLOUDFLARE_OPERATIONS
from sandbox.cloudflare import ACCOUNT_ID, API_PREFIX, DNS_ANSWER_ONLY, OTHER_ZONE_ID, ZONE_ID, FakeCloudflare
from sandbox.contract import VendorContract, openapi_file
from sandbox.stand_in import ReceivedRequest
from tests.agent_client import ServiceClient
from tests.cli import mcp_console
from tests.servers import RunningGateway, run_gateway, serve_asgi, service_gateway, unexpected

TOKEN = "cf-test-token-0123456789"
NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z: analytics spans are computed on this clock, not today's


@dataclass(kw_only=True)
class Cloudflare(ServiceClient):
    service: str = "cloudflare"
    fake: FakeCloudflare
    gateway: RunningGateway

    def sent(self, method: str, path: str) -> ReceivedRequest:
        """The last request the stand-in got for `method` and `path` (there must be one)."""
        received = self.fake.requests_to(method, path)
        assert received, f"no {method} {path} reached Cloudflare: {[(r.method, r.path) for r in self.fake.requests]}"
        return received[-1]


@contextlib.asynccontextmanager
async def cloudflare_gateway(tmp_path: Path, fake: FakeCloudflare | None = None, clock: Clock | None = None,
                             **settings: Any) -> AsyncIterator[Cloudflare]:
    fake = fake or FakeCloudflare(TOKEN)
    async with serve_asgi(fake.app()) as url:
        settings.setdefault("cloudflare_api_url", url + API_PREFIX)
        settings.setdefault("cloudflare_api_token", TOKEN)
        settings.setdefault("cloudflare_account_id", ACCOUNT_ID)
        settings.setdefault("cloudflare_zone_id", ZONE_ID)
        async with service_gateway(tmp_path / "gw.db", "cloudflare", clock=clock or FrozenClock(NOON),
                                   **settings) as (gw, agent_token):
            yield Cloudflare(fake=fake, gateway=gw, url=gw.url, token=agent_token)
    assert fake.violations == [], "requests the real Cloudflare would not accept"


@pytest.fixture
async def cloudflare(tmp_path: Path) -> AsyncIterator[Cloudflare]:
    async with cloudflare_gateway(tmp_path) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def every_operation(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloudflare]:
    """One gateway and one Cloudflare for the table below (each case's check reads only what its call changed)."""
    async with cloudflare_gateway(tmp_path_factory.mktemp("every")) as running:
        yield running


def _first(fake: FakeCloudflare, type_: str) -> dict[str, Any]:
    return next(record for record in fake.records[ZONE_ID].values() if record["type"] == type_)


RECORD_ID = "00000000000000000000000000000001"  # the fake's www A record
Check = Callable[[Any, FakeCloudflare], None]
# Every operation: what the agent sends, the request Cloudflare must receive, and what the agent gets back.
OPERATIONS: list[tuple[str, Any, tuple[str, str, dict[str, str]], Check]] = [
    ("stream-upload", ["https://videos.example.com/demo.mp4", {"name": "demo"}],
     ("POST", f"/accounts/{ACCOUNT_ID}/stream/copy", {}),
     lambda d, f: (d["operation"] == "video_uploaded" and d["video"]["status"] == "downloading"
                   and f.videos[d["video"]["id"]]["source"] == "https://videos.example.com/demo.mp4"
                   and d["video"]["playback"]["hls"].endswith(".m3u8")) or unexpected(d)),
    ("stream-list", [], ("GET", f"/accounts/{ACCOUNT_ID}/stream", {"limit": "100"}),
     lambda d, f: (d["operation"] == "list_videos" and d["total"] == len(f.videos)
                   and {"id", "status", "duration", "created", "thumbnail", "playback"} == set(d["videos"][0]))
     or unexpected(d)),
    ("stream-get", ["00000000000000000000000000000004"],
     ("GET", f"/accounts/{ACCOUNT_ID}/stream/00000000000000000000000000000004", {}),
     lambda d, f: (d["video"]["status"] == "ready" and d["video"]["meta"] == {"name": "intro.mp4"}) or unexpected(d)),
    ("dns-list", [], ("GET", f"/zones/{ZONE_ID}/dns_records", {"page": "1", "per_page": "100"}),
     lambda d, f: (d["operation"] == "list_dns_records" and d["zone_id"] == ZONE_ID
                   and d["total_count"] == len(f.records[ZONE_ID]) and d["next_page"] is None
                   and set(d["records"][0]) == {"id", "type", "name", "content", "proxied", "ttl"}) or unexpected(d)),
    ("dns-list", {"zone": ZONE_ID, "type": "MX", "proxied": False},
     ("GET", f"/zones/{ZONE_ID}/dns_records", {"type": "MX", "proxied": "false", "page": "1", "per_page": "100"}),
     lambda d, f: [record["type"] for record in d["records"]] == ["MX"] or unexpected(d)),
    ("dns-create", [{"type": "AAAA", "name": "v6.example.com", "content": "2001:db8::1", "proxied": True}],
     ("POST", f"/zones/{ZONE_ID}/dns_records", {}),
     lambda d, f: (d["operation"] == "dns_record_created" and d["record"]["ttl"] == 1
                   and f.records[ZONE_ID][d["record"]["id"]]["content"] == "2001:db8::1") or unexpected(d)),
    ("dns-create", ["example.com", {"type": "MX", "name": "example.com", "content": "mx2.example.com",
                                    "priority": 20, "ttl": 3600}],
     ("POST", f"/zones/{ZONE_ID}/dns_records", {}),
     lambda d, f: f.records[ZONE_ID][d["record"]["id"]]["priority"] == 20 or unexpected(d)),
    ("dns-update", [RECORD_ID, {"content": "192.0.2.99"}],
     ("PATCH", f"/zones/{ZONE_ID}/dns_records/{RECORD_ID}", {}),
     lambda d, f: (d["operation"] == "dns_record_updated" and d["record"]["content"] == "192.0.2.99"
                   and f.records[ZONE_ID][RECORD_ID]["comment"] == "the web servers") or unexpected(d)),
    ("dns-delete", [ZONE_ID, "00000000000000000000000000000003"],
     ("DELETE", f"/zones/{ZONE_ID}/dns_records/00000000000000000000000000000003", {}),
     lambda d, f: (d["record_id"] == "00000000000000000000000000000003"
                   and "00000000000000000000000000000003" not in f.records[ZONE_ID]) or unexpected(d)),
    ("list-zones", [], ("GET", "/zones", {"page": "1", "per_page": "20"}),
     lambda d, f: (d["count"] == 2 and d["zones"][0]["name_servers"]) or unexpected(d)),
    ("get-zone", ["example.org"], ("GET", f"/zones/{OTHER_ZONE_ID}", {}),
     lambda d, f: (d["zone"]["name"] == "example.org" and d["zone_id"] == OTHER_ZONE_ID) or unexpected(d)),
    ("get-analytics", [], ("POST", "/graphql", {}),
     lambda d, f: (d["since"] == "2025-12-31T12:00:00.000Z" and d["until"] == "2026-01-01T12:00:00.000Z"
                   and d["granularity"] == "hour" and len(d["series"]) == 24 and d["totals"]["requests"] == 2400)
     or unexpected(d)),
    ("health", [], ("GET", f"/accounts/{ACCOUNT_ID}/tokens/verify", {}),
     lambda d, f: (d["status"] == "healthy" and d["token_status"] == "active" and d["zone"]["name"] == "example.com"
                   and d["latency"] > 0) or unexpected(d)),
    ("dns-get", [RECORD_ID], ("GET", f"/zones/{ZONE_ID}/dns_records/{RECORD_ID}", {}),
     lambda d, f: (d["record"]["comment"] == "the web servers" and d["record"]["tags"] == ["team:web"])
     or unexpected(d)),
    ("dns-export", [], ("GET", f"/zones/{ZONE_ID}/dns_records/export", {}),
     lambda d, f: ("www.example.com." in d["zone_file"] and d["lines"] >= 2) or unexpected(d)),
    ("purge-cache", {"files": ["https://example.com/app.js"]}, ("POST", f"/zones/{ZONE_ID}/purge_cache", {}),
     lambda d, f: (f.purges[-1] == {"files": ["https://example.com/app.js"]} and d["purge_id"]) or unexpected(d)),
    ("purge-everything", [], ("POST", f"/zones/{ZONE_ID}/purge_cache", {}),
     lambda d, f: (f.purges[-1] == {"purge_everything": True} and "everything" in d["message"]) or unexpected(d)),
    ("stream-direct-upload", {"maxDurationSeconds": 600, "meta": {"name": "upload"}},
     ("POST", f"/accounts/{ACCOUNT_ID}/stream/direct_upload", {}),
     lambda d, f: (d["uploadURL"].startswith("https://upload.videodelivery.net/") and d["uid"]) or unexpected(d)),
    ("list-workers", [], ("GET", f"/accounts/{ACCOUNT_ID}/workers/scripts", {}),
     lambda d, f: d["workers"][0]["id"] == "edge-router" or unexpected(d)),
    ("stream-delete", ["00000000000000000000000000000004"],
     ("DELETE", f"/accounts/{ACCOUNT_ID}/stream/00000000000000000000000000000004", {}),
     lambda d, f: ("00000000000000000000000000000004" not in f.videos and "deleted" in d["message"]) or unexpected(d)),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("operation", "args", "expected", "check"), OPERATIONS,
                         ids=[f"{case[0]}-{n}" for n, case in enumerate(OPERATIONS)])
async def test_every_operation_sends_the_right_request_and_answers_with_what_cloudflare_said(
    every_operation: Cloudflare, operation: str, args: Any, expected: tuple[str, str, dict[str, str]], check: Check
) -> None:
    cloudflare = every_operation
    data = await cloudflare.data(operation, args)
    method, path, query = expected
    sent = cloudflare.sent(method, path)
    assert sent.query == query
    assert sent.authorization == f"Bearer {TOKEN}"
    check(data, cloudflare.fake)


async def test_every_declared_route_is_in_cloudflares_openapi_with_its_query_parameters() -> None:
    contract = VendorContract.load("cloudflare")
    for declared in CLOUDFLARE_OPERATIONS:
        fields = {*declared.args_model.model_fields, "zone_id", "account_id"}
        for route in declared.routes:
            assert set(route.placeholders) <= fields, declared.name
            path = route.url_path({name: "x" for name in route.placeholders})
            declared_query = contract.query_parameters(route.method, path)
            assert declared_query is not None, f"{declared.name}: {route.method} {route.path} is not Cloudflare's"
            sent = {entry.partition("=")[0] for entry in route.query}
            assert sent <= declared_query, f"{declared.name}: {sent - declared_query} are not Cloudflare's"


def test_the_project_carries_cloudflares_own_openapi_file() -> None:
    carried = openapi_file("cloudflare")
    assert carried["info"]["x-source"]["repository"] == "cloudflare/api-schemas"
    shared = Path(__file__).resolve().parents[2] / "shared" / "cloudflare" / "openapi.json"
    if shared.is_file():
        assert json.loads(shared.read_text()) == carried


def test_the_checker_resolves_the_dns_record_body_per_type() -> None:
    """The body is a `$ref` to a oneOf of twenty record types: a record that fits none is refused, one that fits
    its type passes; only the answer-only fields (id, read-only times) are exempted."""
    contract = VendorContract.load("cloudflare", (DNS_ANSWER_ONLY,))

    def problems(body: dict[str, Any]) -> list[str]:
        return contract.problems("POST", f"/zones/{ZONE_ID}/dns_records", [], {}, json.dumps(body).encode(),
                                 "application/json")

    assert problems({"type": "A", "name": "www", "content": "192.0.2.1", "ttl": 1}) == []
    assert problems({"type": "MX", "name": "example.com", "content": "mx.example.com", "priority": 10}) == []
    assert problems({"type": "MX", "name": "example.com", "content": "mx.example.com"})  # MX needs a priority
    assert problems({"type": "A", "name": "www", "content": "not an address"})
    assert problems({"type": "A", "name": "www", "content": "192.0.2.1", "ttl": 5})  # 1, or 30 and up
    assert problems({"proxied": True})
    unpatched = VendorContract(openapi_file("cloudflare"))  # the file as it is: an id required on a create
    assert any("'id' is a required property" in problem for problem in unpatched.problems(
        "POST", f"/zones/{ZONE_ID}/dns_records", [], {}, b'{"type": "A", "name": "w", "content": "192.0.2.1"}',
        "application/json"))


async def test_a_zone_is_an_id_a_name_resolved_once_or_the_default(cloudflare: Cloudflare) -> None:
    by_name = await cloudflare.data("dns-list", ["example.org"])
    again = await cloudflare.data("get-zone", ["example.org"])
    default = await cloudflare.data("get-zone")
    unknown = await cloudflare.error("dns-list", ["example.net"])
    assert by_name["zone_id"] == again["zone_id"] == OTHER_ZONE_ID and default["zone_id"] == ZONE_ID
    assert [r.query for r in cloudflare.fake.requests_to("GET", "/zones")] == [{"name": "example.org"},
                                                                               {"name": "example.net"}]
    assert unknown["code"] == -32007 and unknown["data"] == {"kind": "zone", "id": "example.net"}


async def test_without_a_zone_or_a_default_the_zone_is_asked_for(tmp_path: Path) -> None:
    async with cloudflare_gateway(tmp_path, cloudflare_zone_id=None) as cloudflare:
        missing = await cloudflare.error("dns-list")
        given = await cloudflare.data("dns-list", ["example.com"])
        health = await cloudflare.data("health")
    assert missing["code"] == -32602 and missing["data"]["errors"][0]["field"] == "zone"
    assert given["zone_id"] == ZONE_ID and health["status"] == "healthy" and "zone" not in health


async def test_an_update_changes_only_what_it_names_and_overwrite_replaces(cloudflare: Cloudflare) -> None:
    www = dict(cloudflare.fake.records[ZONE_ID][RECORD_ID])
    patched = await cloudflare.data("dns-update", [RECORD_ID, {"ttl": 300}])
    body = cloudflare.sent("PATCH", f"/zones/{ZONE_ID}/dns_records/{RECORD_ID}").body
    kept = dict(cloudflare.fake.records[ZONE_ID][RECORD_ID])
    mx = _first(cloudflare.fake, "MX")
    await cloudflare.data("dns-update", {"recordId": mx["id"], "updateData": {"comment": "primary"}})
    mx_body = cloudflare.sent("PATCH", f"/zones/{ZONE_ID}/dns_records/{mx['id']}").body
    half = await cloudflare.error("dns-update", [RECORD_ID, {"content": "192.0.2.7"}], overwrite=True)
    replaced = await cloudflare.data("dns-update", [RECORD_ID, {"type": "A", "name": "www.example.com",
                                                                "content": "192.0.2.7"}], overwrite=True)
    assert body == {"type": "A", "name": "www.example.com", "content": "192.0.2.1", "ttl": 300}
    assert patched["record"]["ttl"] == 300
    assert (kept["proxied"], kept["comment"], kept["tags"]) == (www["proxied"], www["comment"], www["tags"])
    assert mx_body == {"type": "MX", "name": "example.com", "content": "mx.example.com", "priority": 10,
                       "comment": "primary"}
    assert half["code"] == -32602 and "overwrite" in half["message"]
    assert replaced["record"]["comment"] is None and replaced["record"]["proxied"] is False
    assert cloudflare.fake.requests_to("PUT", f"/zones/{ZONE_ID}/dns_records/{RECORD_ID}")


async def test_cloudflares_envelope_and_codes_become_the_gateways_errors(cloudflare: Cloudflare) -> None:
    unknown_zone = await cloudflare.error("get-zone", ["ffffffffffffffffffffffffffffffff"])
    missing = await cloudflare.error("dns-get", ["ffffffffffffffffffffffffffffffff"])
    identical = await cloudflare.error("dns-create", [{"type": "A", "name": "www.example.com",
                                                       "content": "192.0.2.1"}])
    cname = await cloudflare.error("dns-create", [{"type": "CNAME", "name": "www.example.com",
                                                   "content": "example.net"}])
    cloudflare.fake.refuse_next_with = (200, 1004, "DNS Validation Error")
    success_false = await cloudflare.error("dns-list")
    cloudflare.fake.refuse_next_with = (400, 1004, "DNS Validation Error")
    invalid = await cloudflare.error("dns-list")
    cloudflare.fake.refuse_next_with = (400, 10000, "Authentication error")
    auth_code = await cloudflare.error("dns-list")
    cloudflare.fake.rate_limited_for = 120
    limited = await cloudflare.error("list-zones")
    cloudflare.fake.rate_limited_for = 0
    cloudflare.fake.failing = True
    broken = await cloudflare.error("list-zones")
    assert (unknown_zone["code"], unknown_zone["data"]["upstreamStatus"]) == (-32007, 400)
    assert unknown_zone["data"]["errors"][0]["code"] == 7003
    assert (missing["code"], missing["data"]["kind"]) == (-32007, "dns record")
    assert (identical["code"], identical["data"]["errors"][0]["code"]) == (-32008, 81058)
    assert (cname["code"], cname["data"]["errors"][0]["code"]) == (-32008, 81053)
    assert (success_false["code"], success_false["data"]["upstreamStatus"]) == (-32009, 200)
    assert invalid["code"] == -32009 and "DNS Validation Error (1004)" in invalid["message"]
    assert auth_code["code"] == -32001
    assert (limited["code"], limited["http"], limited["data"]["retryAfterMs"]) == (-32005, 429, 120_000)
    assert broken["code"] == -32001 and broken["data"]["upstreamStatus"] == 500


async def test_a_refused_token_is_a_configuration_problem_and_health_says_degraded(tmp_path: Path) -> None:
    async with cloudflare_gateway(tmp_path, cloudflare_api_token="wrong-token-123") as cloudflare:
        refused = await cloudflare.error("dns-list")
        degraded = await cloudflare.data("health")
    assert (refused["code"], refused["data"]["errors"][0]["code"]) == (-32001, 9109)
    assert "CLOUDFLARE_API_TOKEN" in refused["message"] and degraded["status"] == "degraded"


async def test_health_reads_a_user_token_and_an_inactive_one_and_down_is_an_error(tmp_path: Path) -> None:
    fake = FakeCloudflare(TOKEN, token_kind="user")
    async with cloudflare_gateway(tmp_path, fake) as cloudflare:
        user = await cloudflare.data("health")
        fake.token_status = "disabled"
        inactive = await cloudflare.data("health")
    assert user["status"] == "healthy" and fake.requests_to("GET", "/user/tokens/verify")
    assert not fake.requests_to("GET", f"/accounts/{ACCOUNT_ID}")  # unreadable for a DNS or Stream token
    assert inactive["status"] == "degraded" and inactive["token_status"] == "disabled"
    async with run_gateway(tmp_path / "down.db", extra_specs=(), cloudflare_api_token=TOKEN,
                           cloudflare_account_id=ACCOUNT_ID, cloudflare_api_url="http://127.0.0.1:9/client/v4") as gw:
        agent_id, agent_token = await gw.add_agent()
        await gw.grant(agent_id, "cloudflare")
        down = await Cloudflare(fake=fake, gateway=gw, url=gw.url, token=agent_token).error("health")
        refused = await Cloudflare(fake=fake, gateway=gw, url=gw.url, token=agent_token).error("dns-list", [ZONE_ID])
    assert down["code"] == -32001 and down["data"]["status"] == "down"
    assert refused["code"] == -32001 and "<CLOUDFLARE_API_URL>" in refused["message"]


async def test_analytics_take_minutes_ago_switch_to_days_beyond_three_and_map_graphql_errors(
    cloudflare: Cloudflare
) -> None:
    hours = await cloudflare.data("get-analytics", ["example.com"], since=-360)
    week = await cloudflare.data("get-analytics", {"since": "2025-12-25T12:00:00Z", "until": "2026-01-01T12:00:00Z"})
    query = cloudflare.sent("POST", "/graphql").body
    backwards = await cloudflare.error("get-analytics", since="2026-01-02T00:00:00Z")
    nonsense = await cloudflare.error("get-analytics", since="last tuesday")
    cloudflare.fake.analytics_denied = True
    denied = await cloudflare.error("get-analytics")
    assert hours["granularity"] == "hour" and len(hours["series"]) == 6 and hours["totals"]["threats"] == 6
    assert week["granularity"] == "day" and len(week["series"]) == 8
    assert "httpRequests1dGroups" in query["query"] and query["variables"] == {
        "zoneTag": ZONE_ID, "since": "2025-12-25", "until": "2026-01-01"}
    assert not [r for r in cloudflare.fake.requests if "analytics/dashboard" in r.path]  # removed from Cloudflare
    assert backwards["code"] == nonsense["code"] == -32602
    assert denied["code"] == -32001 and "not authorized" in denied["message"]


async def test_arguments_are_refused_before_cloudflare_is_called(cloudflare: Cloudflare) -> None:
    no_kind = await cloudflare.error("purge-cache", [])
    two_kinds = await cloudflare.error("purge-cache", {"files": ["a"], "hosts": ["b"]})
    bad_ttl = await cloudflare.error("dns-create", [{"type": "A", "name": "x", "content": "192.0.2.1", "ttl": 5}])
    no_content = await cloudflare.error("dns-create", [{"type": "A", "name": "x"}])
    big_page = await cloudflare.error("list-zones", limit=100)
    not_url = await cloudflare.error("stream-upload", ["not a url"])
    for error in (no_kind, two_kinds, bad_ttl, no_content, big_page, not_url):
        assert error["code"] == -32602, error
    assert not cloudflare.fake.requests_to("POST", f"/zones/{ZONE_ID}/purge_cache")
    assert not cloudflare.fake.requests_to("POST", f"/zones/{ZONE_ID}/dns_records")


async def test_a_record_id_that_is_a_path_step_is_refused_not_climbed(cloudflare: Cloudflare) -> None:
    """`{"recordId": ".."}` made dns-delete send DELETE /zones/<id>/: Cloudflare's route deleting the zone."""
    for step in ("..", "."):
        for operation in ("dns-delete", "dns-get"):
            refused = await cloudflare.error(operation, {"recordId": step})
            assert refused["code"] == -32602 and refused["data"]["errors"][0]["field"] == "recordId", refused
    assert not [r for r in cloudflare.fake.requests if r.method == "DELETE" or "/dns_records/" in r.path]


async def test_the_slash_form_reads_resource_then_action_and_the_catalogs_names_answer(
    cloudflare: Cloudflare
) -> None:
    purged = await cloudflare.data("cache-purge", {"hosts": ["www.example.com"]})
    listed = await cloudflare.slash_answer("/mcp-cloudflare dns list example.org")
    records = await cloudflare.slash_answer("/mcp-cf dns list-records")
    got = await cloudflare.slash_answer(f"/mcp-cloudflare dns get {RECORD_ID}")
    videos = await cloudflare.slash_answer("/mcp-cloudflare list-videos")
    assert listed["result"]["data"]["zone_id"] == OTHER_ZONE_ID
    assert records["result"]["data"]["zone_id"] == ZONE_ID
    assert got["result"]["data"]["record"]["id"] == RECORD_ID
    assert videos["result"]["data"]["operation"] == "list_videos"
    assert purged["message"] == "Cache purged: 1 hosts" and cloudflare.fake.purges == [{"hosts": ["www.example.com"]}]


async def test_unconfigured_cloudflare_names_what_is_missing_and_calls_nothing(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "n.db", extra_specs=(), cloudflare_api_token=TOKEN) as gw:
        agent_id, agent_token = await gw.add_agent()
        await gw.grant(agent_id, "cloudflare")
        agent = Cloudflare(fake=FakeCloudflare(TOKEN), gateway=gw, url=gw.url, token=agent_token)
        error = await agent.error("stream-list")
    assert error["code"] == -32001 and error["data"]["missingSettings"] == ["CLOUDFLARE_ACCOUNT_ID"]


async def test_catalog_costs_are_the_specs_per_operation_numbers(cloudflare: Cloudflare) -> None:
    upload = (await cloudflare.call("stream-upload", ["https://videos.example.com/a.mp4"])).json()["result"]
    record = (await cloudflare.call("dns-get", [RECORD_ID])).json()["result"]
    assert (upload["metadata"]["tokensUsed"], upload["metadata"]["cost"]) == (400, 0.0012)
    assert (record["metadata"]["tokensUsed"], record["metadata"]["cost"]) == (300, 0.0009)  # no cap.: the catalog's


async def test_the_token_never_reaches_a_log_a_result_an_error_or_the_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with cloudflare_gateway(tmp_path) as cloudflare:
            cloudflare.fake.refuse_next_with = (400, 1004, f"Bearer {TOKEN} is not welcome")  # an echoing upstream
            for operation, args in [("dns-list", []), ("dns-list", []), ("dns-get", ["f" * 32]), ("health", [])]:
                seen.append((await cloudflare.call(operation, args)).text)
            db = cloudflare.gateway.gateway.store.path
    seen.append((await mcp_console("calls", "export", "--format", "jsonl", "--db", db)).stdout)
    seen.append(db.read_bytes().decode("latin-1"))
    seen += [record.getMessage() for record in caplog.records]
    assert seen and not [text for text in seen if TOKEN in text]
