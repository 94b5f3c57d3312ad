"""A Cloudflare-compatible server for the tests: the API v4 routes the cloudflare handler uses, answering in
Cloudflare's envelope `{success, errors, messages, result, result_info}` with state that behaves (zones by id
and name, DNS records that a PATCH changes field by field and a PUT replaces, Stream videos, a token that is an
account's or a user's) and Cloudflare's ways of refusing: a bad token, an unknown identifier, a record that
exists, the rate limit, `success: false` under HTTP 200, GraphQL errors under HTTP 200. Every API request is
checked against `sandbox/openapi/cloudflare.json` (`sandbox/contract.py`)."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from sandbox.contract import AnswerOnlyFields, VendorContract
from sandbox.stand_in import Call, StandIn

API_PREFIX = "/client/v4"
ZONE_ID = "023e105f4ecef8ad9ca31a8372d0c353"
OTHER_ZONE_ID = "9a7806061c88ada191ed06f989cc3dac"
ACCOUNT_ID = "01a7362d577a6c3019a474fd6f485823"
CREATED = "2026-01-05T10:00:00.000000Z"
WRITABLE = ("type", "name", "content", "ttl", "proxied", "priority", "comment", "tags", "data")
# Cloudflare's file lists these as required in the DNS record schema that bodies and answers share: only an
# answer can carry them (Cloudflare assigns the id; the others are read-only).
DNS_ANSWER_ONLY = AnswerOnlyFields("dns-records_dns-record", ("id", "proxiable", "created_on", "modified_on"))


def envelope(result: Any, status: int = 200, *, errors: list[dict[str, Any]] | None = None,
             result_info: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
             **more: Any) -> JSONResponse:
    failed = bool(errors)
    body: dict[str, Any] = {"success": not failed, "errors": errors or [], "messages": [],
                            "result": None if failed else result, **more}
    if result_info is not None:
        body["result_info"] = result_info
    return JSONResponse(body, status, headers=headers)


def failure(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return envelope(None, status, errors=[{"code": code, "message": message}], headers=headers)


class FakeCloudflare(StandIn):
    """`token` is the API token it takes; `token_kind` says whether it is an account's token (verified at
    `/accounts/{id}/tokens/verify`) or a user's (at `/user/tokens/verify`)."""

    def __init__(self, token: str = "cf-test-token", *, token_kind: str = "account",
                 clock: Callable[[], float] = time.time, contract: VendorContract | None = None,
                 delay_seconds: float = 0.0) -> None:
        super().__init__(contract or functools.partial(VendorContract.load, "cloudflare", (DNS_ANSWER_ONLY,)),
                         API_PREFIX, delay_seconds)
        self.token = token
        self.token_kind = token_kind
        self.token_status = "active"
        self.clock = clock
        self.rate_limited_for = 0  # seconds of Retry-After to answer with, while > 0
        self.failing = False  # every API call answers 500
        self.refuse_next_with: tuple[int, int, str] | None = None  # (HTTP status, code, message), once
        self.analytics_denied = False
        self.purges: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.zones: dict[str, dict[str, Any]] = {
            zone_id: {"id": zone_id, "name": name, "status": "active", "paused": False, "type": "full",
                      "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                      "account": {"id": ACCOUNT_ID, "name": "Acme"}, "created_on": CREATED, "modified_on": CREATED}
            for zone_id, name in ((ZONE_ID, "example.com"), (OTHER_ZONE_ID, "example.org"))}
        self.records: dict[str, dict[str, dict[str, Any]]] = {ZONE_ID: {}, OTHER_ZONE_ID: {}}
        self._record(ZONE_ID, type="A", name="www.example.com", content="192.0.2.1", proxied=True, ttl=1,
                     comment="the web servers", tags=["team:web"])
        self._record(ZONE_ID, type="MX", name="example.com", content="mx.example.com", priority=10, ttl=3600)
        self._record(ZONE_ID, type="TXT", name="example.com", content="v=spf1 -all", ttl=300)
        self.videos: dict[str, dict[str, Any]] = {}
        self._video("https://videos.example.com/intro.mp4", {"name": "intro.mp4"}, state="ready")
        self._declare_routes()

    # -- state ------------------------------------------------------------------------------------

    def _record(self, zone_id: str, **fields: Any) -> dict[str, Any]:
        record_id = f"{next(self._ids):032x}"
        record = {"id": record_id, "zone_id": zone_id, "zone_name": self.zones[zone_id]["name"], "proxied": False,
                  "proxiable": fields["type"] in ("A", "AAAA", "CNAME"), "ttl": 1, "comment": None, "tags": [],
                  "meta": {"auto_added": False}, "created_on": CREATED, "modified_on": CREATED, **fields}
        self.records[zone_id][record_id] = record
        return record

    def _video(self, url: str, meta: dict[str, Any] | None, state: str = "downloading") -> dict[str, Any]:
        uid = f"{next(self._ids):032x}"
        video = {"uid": uid, "status": {"state": state}, "meta": meta or {}, "created": CREATED, "modified": CREATED,
                 "size": 4_190_963, "duration": 12.5 if state == "ready" else -1, "input": {"width": 1920,
                                                                                           "height": 1080},
                 "readyToStream": state == "ready", "requireSignedURLs": False,
                 "preview": f"https://customer-x.cloudflarestream.com/{uid}/watch",
                 "thumbnail": f"https://customer-x.cloudflarestream.com/{uid}/thumbnails/thumbnail.jpg",
                 "playback": {"hls": f"https://customer-x.cloudflarestream.com/{uid}/manifest/video.m3u8",
                              "dash": f"https://customer-x.cloudflarestream.com/{uid}/manifest/video.mpd"},
                 "source": url}
        self.videos[uid] = video
        return video

    # -- refusals ---------------------------------------------------------------------------------

    async def gate(self, call: Call) -> Response | None:
        scheme, _, token = (call.request.authorization or "").partition(" ")
        if scheme != "Bearer" or not token:
            return envelope(None, 400, errors=[{"code": 6003, "message": "Invalid request headers"},
                                               {"code": 6111, "message": "Invalid format for Authorization header"}])
        if token != self.token:
            return failure(403, 9109, "Unauthorized to access requested resource")
        if self.rate_limited_for:
            return failure(429, 971, "Please wait and consider throttling your request speed",
                           {"Retry-After": str(self.rate_limited_for)})
        if self.failing:
            return failure(500, 10001, "service temporarily unavailable")
        if self.refuse_next_with is not None:
            status, code, message = self.refuse_next_with
            self.refuse_next_with = None
            return failure(status, code, message)
        return None

    def missing(self, call: Call) -> Response:
        return failure(404, 7000, "No route for that URI")

    # -- routes ---------------------------------------------------------------------------------------

    def _zone_of(self, call: Call) -> str | None:
        zone_id = call.params["zone_id"]
        return zone_id if zone_id in self.zones else None

    def _no_zone(self, call: Call) -> Response:
        return failure(400, 7003, f"Could not route to /zones/{call.params['zone_id']}, perhaps your object "
                                  "identifier is invalid?")

    def _declare_routes(self) -> None:
        route = self.route

        @route("GET", "/accounts/{account_id}/tokens/verify")
        async def account_token(call: Call) -> Response:
            if self.token_kind != "account" or call.params["account_id"] != ACCOUNT_ID:
                return failure(401, 1000, "Invalid API Token")
            return envelope({"id": "ed17574386854bf78a67040be0a770b0", "status": self.token_status,
                             "expires_on": "2027-01-01T00:00:00Z"})

        @route("GET", "/user/tokens/verify")
        async def user_token(call: Call) -> Response:
            if self.token_kind != "user":
                return failure(401, 1000, "Invalid API Token")
            return envelope({"id": "ed17574386854bf78a67040be0a770b0", "status": self.token_status})

        @route("GET", "/zones")
        async def zones(call: Call) -> Response:
            found = [zone for zone in self.zones.values()
                     if call.query.get("name") in (None, zone["name"])
                     and call.query.get("status") in (None, zone["status"])]
            per_page = int(call.query.get("per_page", 20))
            page = int(call.query.get("page", 1))
            return envelope(found[(page - 1) * per_page: page * per_page], result_info={
                "page": page, "per_page": per_page, "count": len(found[(page - 1) * per_page: page * per_page]),
                "total_count": len(found), "total_pages": max(1, -(-len(found) // per_page))})

        @route("GET", "/zones/{zone_id}")
        async def zone(call: Call) -> Response:
            zone_id = self._zone_of(call)
            return envelope(self.zones[zone_id]) if zone_id else self._no_zone(call)

        @route("GET", "/zones/{zone_id}/dns_records")
        async def records(call: Call) -> Response:
            zone_id = self._zone_of(call)
            if zone_id is None:
                return self._no_zone(call)
            query = call.query
            found = [record for record in self.records[zone_id].values()
                     if all(query.get(key) in (None, str(record[key]).lower() if key == "proxied" else record[key])
                            for key in ("type", "name", "content", "proxied"))
                     and query.get("search", "") in f"{record['name']} {record['content']}"]
            per_page = int(query.get("per_page", 100))
            page = int(query.get("page", 1))
            chunk = found[(page - 1) * per_page: page * per_page]
            return envelope(chunk, result_info={"page": page, "per_page": per_page, "count": len(chunk),
                                                "total_count": len(found),
                                                "total_pages": max(1, -(-len(found) // per_page))})

        @route("POST", "/zones/{zone_id}/dns_records")
        async def create_record(call: Call) -> Response:
            zone_id = self._zone_of(call)
            if zone_id is None:
                return self._no_zone(call)
            body = call.body
            same = [record for record in self.records[zone_id].values() if record["name"] == body["name"]]
            if any(record["type"] == body["type"] and record["content"] == body.get("content") for record in same):
                return failure(400, 81058, "An identical record already exists.")
            if (body["type"] == "CNAME" and same) or any(record["type"] == "CNAME" for record in same):
                return failure(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
            return envelope(self._record(zone_id, **{key: body[key] for key in WRITABLE if key in body}))

        def record_of(call: Call) -> dict[str, Any] | None:
            zone_id = self._zone_of(call)
            return self.records[zone_id].get(call.params["dns_record_id"]) if zone_id else None

        @route("GET", "/zones/{zone_id}/dns_records/export")
        async def export(call: Call) -> Response:
            zone_id = self._zone_of(call)
            if zone_id is None:
                return self._no_zone(call)
            lines = [f"{record['name']}.\t{record['ttl']}\tIN\t{record['type']}\t{record['content']}"
                     for record in self.records[zone_id].values()]
            return PlainTextResponse(";; exported by the fake\n" + "\n".join(lines) + "\n")

        @route("GET", "/zones/{zone_id}/dns_records/{dns_record_id}")
        async def record(call: Call) -> Response:
            found = record_of(call)
            return envelope(found) if found else failure(404, 81044, "Record does not exist.")

        @route("PATCH", "/zones/{zone_id}/dns_records/{dns_record_id}")
        async def patch_record(call: Call) -> Response:
            found = record_of(call)
            if found is None:
                return failure(404, 81044, "Record does not exist.")
            found.update({key: call.body[key] for key in WRITABLE if key in call.body}, modified_on=CREATED)
            return envelope(found)

        @route("PUT", "/zones/{zone_id}/dns_records/{dns_record_id}")
        async def put_record(call: Call) -> Response:
            found = record_of(call)
            if found is None:
                return failure(404, 81044, "Record does not exist.")
            # An overwrite: what the body leaves out goes back to Cloudflare's defaults.
            found.update({"proxied": False, "ttl": 1, "comment": None, "tags": [], "priority": None},
                         **{key: call.body[key] for key in WRITABLE if key in call.body})
            return envelope(found)

        @route("DELETE", "/zones/{zone_id}/dns_records/{dns_record_id}")
        async def delete_record(call: Call) -> Response:
            found = record_of(call)
            if found is None:
                return failure(404, 81044, "Record does not exist.")
            del self.records[found["zone_id"]][found["id"]]
            return envelope({"id": found["id"]})

        @route("POST", "/zones/{zone_id}/purge_cache")
        async def purge(call: Call) -> Response:
            if self._zone_of(call) is None:
                return self._no_zone(call)
            self.purges.append(call.body)
            return envelope({"id": f"{next(self._ids):032x}"})

        @route("POST", "/graphql")
        async def graphql(call: Call) -> Response:
            variables = call.body.get("variables") or {}
            if self.analytics_denied:
                return JSONResponse({"data": None, "errors": [
                    {"message": "not authorized for that account", "path": ["viewer", "zones", "0"]}]})
            if variables.get("zoneTag") not in self.zones:
                return JSONResponse({"data": None, "errors": [{"message": "zone does not exist"}]})
            hourly = "httpRequests1hGroups" in call.body["query"]
            return JSONResponse({"data": {"viewer": {"zones": [
                {"httpRequests1hGroups" if hourly else "httpRequests1dGroups":
                 self._series(variables["since"], variables["until"], hourly)}]}}, "errors": None})

        @route("GET", "/accounts/{account_id}/stream")
        async def videos(call: Call) -> Response:
            found = [video for video in self.videos.values()
                     if call.query.get("status") in (None, video["status"]["state"])]
            limit = int(call.query.get("limit", 1000))
            return envelope(found[:limit], total=len(found), range=min(limit, len(found)))

        @route("POST", "/accounts/{account_id}/stream/copy")
        async def copy(call: Call) -> Response:
            return envelope(self._video(call.body["url"], call.body.get("meta")))

        @route("GET", "/accounts/{account_id}/stream/{identifier}")
        async def video(call: Call) -> Response:
            found = self.videos.get(call.params["identifier"])
            return envelope(found) if found else failure(404, 10005, "Video not found")

        @route("DELETE", "/accounts/{account_id}/stream/{identifier}")
        async def delete_video(call: Call) -> Response:
            if self.videos.pop(call.params["identifier"], None) is None:
                return failure(404, 10005, "Video not found")
            return envelope("")

        @route("POST", "/accounts/{account_id}/stream/direct_upload")
        async def direct_upload(call: Call) -> Response:
            uid = f"{next(self._ids):032x}"
            return envelope({"uid": uid, "uploadURL": f"https://upload.videodelivery.net/{uid}",
                             "watermark": None, "scheduledDeletion": None})

        @route("GET", "/accounts/{account_id}/workers/scripts")
        async def workers(call: Call) -> Response:
            return envelope([{"id": "edge-router", "etag": "ea95132c", "created_on": CREATED,
                              "modified_on": CREATED, "usage_model": "standard", "handlers": ["fetch"]}])

    def _series(self, since: str, until: str, hourly: bool) -> list[dict[str, Any]]:
        step = timedelta(hours=1) if hourly else timedelta(days=1)
        start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        end = datetime.fromisoformat(until.replace("Z", "+00:00"))
        if start.tzinfo is None:
            start, end = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC) + step  # dates: the last day counts
        buckets: list[dict[str, Any]] = []
        moment = start
        while moment < end and len(buckets) < 1000:
            dimension = {"datetime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")} if hourly else {
                "date": moment.strftime("%Y-%m-%d")}
            buckets.append({"dimensions": dimension, "sum": {"requests": 100, "cachedRequests": 60, "bytes": 5000,
                                                             "cachedBytes": 3000, "threats": 1, "pageViews": 40},
                            "uniq": {"uniques": 7}})
            moment += step
        return buckets
