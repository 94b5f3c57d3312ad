"""Cloudflare: DNS, zones, Stream, analytics and the on-call extras, against Cloudflare's API
(shared/spec/services.md "cloudflare", shared/cloudflare/openapi.json).

Every operation is declared once below with its arguments, risk, cost and the Cloudflare route it calls. A zone
argument is an id or a name (resolved once with `GET /zones?name=`), or left out for CLOUDFLARE_ZONE_ID; every
answer is read through Cloudflare's envelope `{success, errors, messages, result, result_info}`."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from gateway_core.clock import Clock, iso_utc, system_clock
from gateway_core.config import Settings
from gateway_core.errors import (
    Conflict,
    GatewayError,
    InvalidParams,
    RateLimitExceeded,
    ResourceNotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.rest import Route, choose_route, health_answer, json_answer, ms_since, pick, priced, send
from gateway_core.health import HealthReport
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable, ResultShaper, Risk, Target
from gateway_core.upstream import UpstreamClient, UpstreamResponse

CLOUDFLARE_API_URL = "https://api.cloudflare.com/client/v4"
ZONE_ID = re.compile(r"[0-9a-f]{32}")
HOURLY_LIMIT = timedelta(days=3)  # httpRequests1hGroups answers at most three days; longer spans go by day
AUTH_CODES = frozenset({10000, 9109, 6003, 6111})
NOT_FOUND_CODES = frozenset({7000, 7003})
EXISTS_CODES = frozenset({81053, 81057, 81058})

# -- argument models ---------------------------------------------------------------------------------

RecordType = Literal["A", "AAAA", "CAA", "CERT", "CNAME", "DNSKEY", "DS", "HTTPS", "LOC", "MX", "NAPTR", "NS", "PTR",
                     "SMIMEA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI"]
Direction = Literal["asc", "desc"]
ZONE = Field(None, description="the zone's id or name (example.com); default CLOUDFLARE_ZONE_ID")
TTL = Field(None, description="seconds, 30 to 86400; 1 is automatic")


class _Object(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _check_ttl(ttl: int | None) -> None:
    if ttl is not None and ttl != 1 and not 30 <= ttl <= 86_400:
        raise ValueError("ttl is 1 (automatic) or 30 to 86400 seconds")


class RecordData(_Object):
    type: RecordType
    name: str = Field(min_length=1, max_length=255, description="the record's name, or @ for the zone apex")
    content: str | None = Field(None, description="the address, host or text (SRV, CAA and the like use data)")
    ttl: int = Field(1, description="seconds, 30 to 86400; 1 is automatic")
    proxied: bool | None = None
    priority: int | None = Field(None, ge=0, le=65_535, description="MX, SRV and URI records")
    comment: str | None = None
    tags: list[str] | None = None
    data: dict[str, Any] | None = Field(None, description="the fields of SRV, CAA, TLSA and other structured records")

    @model_validator(mode="after")
    def _complete(self) -> Self:
        _check_ttl(self.ttl)
        if self.content is None and self.data is None:
            raise ValueError("a record needs content (or data, for structured types)")
        return self


class RecordUpdate(_Object):
    type: RecordType | None = None
    name: str | None = Field(None, min_length=1, max_length=255)
    content: str | None = None
    ttl: int | None = TTL
    proxied: bool | None = None
    priority: int | None = Field(None, ge=0, le=65_535)
    comment: str | None = None
    tags: list[str] | None = None
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _names_something(self) -> Self:
        _check_ttl(self.ttl)
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        return self


class ZoneArgs(OperationArgs):
    zone: str | None = ZONE


class DnsListArgs(ZoneArgs):
    type: RecordType | None = None
    name: str | None = None
    content: str | None = None
    proxied: bool | None = None
    search: str | None = None
    order: Literal["type", "name", "content", "ttl", "proxied"] | None = None
    direction: Direction | None = None
    match: Literal["any", "all"] | None = None
    page: int = Field(1, ge=1)
    limit: int = Field(100, ge=1, le=5_000, description="records per page (Cloudflare's per_page)")


class DnsCreateArgs(ZoneArgs):
    recordData: RecordData


class RecordArgs(ZoneArgs):
    recordId: str = Field(min_length=1, max_length=32, description="the DNS record's id")


class DnsUpdateArgs(RecordArgs):
    updateData: RecordUpdate
    overwrite: bool = Field(False, description="replace the whole record (PUT): updateData must be a full record")

    @model_validator(mode="after")
    def _full_when_overwriting(self) -> Self:
        update = self.updateData
        if self.overwrite and (update.type is None or update.name is None or (update.content is None
                                                                                 and update.data is None)):
            raise ValueError("overwrite replaces the whole record: give type, name and content (or data)")
        return self


class ListZonesArgs(OperationArgs):
    name: str | None = None
    status: Literal["initializing", "pending", "active", "moved"] | None = None
    account: str | None = Field(None, description="only this account's zones (its id)")
    order: Literal["name", "status", "account.id", "account.name"] | None = None
    direction: Direction | None = None
    match: Literal["any", "all"] | None = None
    page: int = Field(1, ge=1)
    limit: int = Field(20, ge=5, le=50, description="zones per page (Cloudflare's per_page, 5 to 50)")


class AnalyticsArgs(ZoneArgs):
    since: str | int | None = Field(None, description="ISO-8601 time, or minutes ago as a negative number (-1440)")
    until: str | int | None = Field(None, description="ISO-8601 time, or minutes ago (default: now)")


class StreamUploadArgs(OperationArgs):
    videoUrl: HttpUrl = Field(description="where Cloudflare fetches the video from")
    meta: dict[str, Any] | None = Field(None, description="e.g. {'name': 'intro.mp4'}")
    creator: str | None = None
    requireSignedURLs: bool | None = None
    allowedOrigins: list[str] | None = None
    thumbnailTimestampPct: float | None = Field(None, ge=0, le=1)
    scheduledDeletion: str | None = None
    watermark: dict[str, Any] | None = None


class StreamListArgs(OperationArgs):
    status: Literal["pendingupload", "downloading", "queued", "inprogress", "ready", "error"] | None = None
    creator: str | None = None
    search: str | None = None
    start: str | None = Field(None, description="videos created at or after this ISO-8601 time")
    end: str | None = Field(None, description="videos created before this ISO-8601 time")
    asc: bool | None = None
    limit: int = Field(100, ge=1, le=1000)


class VideoArgs(OperationArgs):
    videoId: str = Field(min_length=1, description="the video's uid")


class DirectUploadArgs(OperationArgs):
    maxDurationSeconds: int = Field(ge=1, le=21_600)
    expiry: str | None = Field(None, description="when the upload URL stops working (ISO-8601)")
    meta: dict[str, Any] | None = None


class PurgeArgs(ZoneArgs):
    files: list[str] | None = None
    tags: list[str] | None = None
    hosts: list[str] | None = None
    prefixes: list[str] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [name for name in ("files", "tags", "hosts", "prefixes") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("name exactly one of files, tags, hosts or prefixes (purge-everything empties it all)")
        return self


# -- the declarations --------------------------------------------------------------------------------

Prepare = Callable[["CloudflareHandler", dict[str, Any]], Awaitable[None]]
Answer = Literal["envelope", "text", "graphql"]


@dataclass(frozen=True, slots=True)
class CloudflareOperation(Operation):
    """`routes` (the first whose `when` is set, else the first without one; none: the handler's health);
    `label` is `data.operation` as upstream named it; `prepare` completes the arguments first; `answer` is
    how the reply is read (Cloudflare's envelope, a zone file's text, a GraphQL result)."""

    routes: tuple[Route, ...] = ()
    label: str = ""
    prepare: tuple[Prepare, ...] = ()
    answer: Answer = "envelope"

    def parse_args(self, args: list[Any] | dict[str, Any] | None,
                   defaults: Mapping[str, Any] | None = None) -> OperationArgs:
        return Operation.parse_args(self, _zone_left_out(self, args), defaults)


def _zone_left_out(operation: Operation, args: list[Any] | dict[str, Any] | None) -> Any:
    """Positional arguments without the optional zone first: an object in first position, or fewer arguments
    than the zone and the required ones after it would take, mean the zone was left out."""
    fields = operation.positional_fields
    if not isinstance(args, list) or not args or fields[:1] != ["zone"]:
        return args
    required_after = [name for name in fields[1:] if operation.args_model.model_fields[name].is_required()]
    if isinstance(args[0], dict) or len(args) <= len(required_after):
        return [None, *args]
    return args


def _op(name: str, args: type[OperationArgs], risk: Risk, description: str, *routes: Route, label: str = "",
        cap: int | None = None, group: str, aliases: tuple[str, ...] = (), target: Target | None = None,
        shape: ResultShaper | None = None, prepare: tuple[Prepare, ...] = (),
        answer: Answer = "envelope") -> CloudflareOperation:
    """`cap` is the spec's per-operation token count, priced at the catalog's rate."""
    return CloudflareOperation(name, args, risk, description, tokens=cap, cost_usd=priced("cloudflare", cap),
                               group=group, aliases=aliases, target=target, shape=shape, routes=routes,
                               label=label or name.replace("-", "_"), prepare=prepare, answer=answer)


ZONE_PATH = "/zones/{zone_id}"
RECORD_PATH = ZONE_PATH + "/dns_records/{recordId}"
STREAM = "/accounts/{account_id}/stream"
RECORD = ("id", "type", "name", "content", "proxied", "ttl")
VIDEO = ("id", "status", "duration", "created", "thumbnail", "playback")


def GET(path: str, *query: str) -> Route:
    return Route("GET", path, query)


def _result(envelope: Any) -> Any:
    return envelope.get("result") if isinstance(envelope, dict) else envelope


def _record(item: Any, *fields: str) -> dict[str, Any]:
    return pick(item, *(fields or RECORD))


def _records(arguments: Mapping[str, Any], envelope: Any) -> dict[str, Any]:
    info = envelope.get("result_info") or {}
    page, pages = info.get("page", arguments["page"]), info.get("total_pages")
    records = [_record(record) for record in _result(envelope) or []]
    return {"count": len(records), "total_count": info.get("total_count"), "page": page, "total_pages": pages,
            "next_page": page + 1 if pages and page < pages else None, "records": records}


def _changed_record(message: str) -> ResultShaper:
    return lambda arguments, envelope: {"record": _record(_result(envelope), *RECORD, "comment", "tags",
                                                          "priority", "modified_on"),
                                        "message": message.format(**arguments)}


def _zone(item: Any) -> dict[str, Any]:
    return pick(item, "id", "name", "status", "name_servers")


def _zones(arguments: Mapping[str, Any], envelope: Any) -> dict[str, Any]:
    info = envelope.get("result_info") or {}
    zones = [_zone(zone) for zone in _result(envelope) or []]
    page, pages = info.get("page", arguments["page"]), info.get("total_pages")
    return {"count": len(zones), "total_count": info.get("total_count"), "page": page,
            "next_page": page + 1 if pages and page < pages else None, "zones": zones}


def _video(item: Any) -> dict[str, Any]:
    """A Stream video in the upstream's shape: `id` is Cloudflare's uid, `status` its state."""
    video = dict(item) if isinstance(item, dict) else {}
    status = video.get("status")
    return {**video, "id": video.get("uid"), "status": status.get("state") if isinstance(status, dict) else status}


def _videos(arguments: Mapping[str, Any], envelope: Any) -> dict[str, Any]:
    videos = [pick(_video(video), *VIDEO) for video in _result(envelope) or []]
    return {"count": len(videos), "total": envelope.get("total"), "range": envelope.get("range"), "videos": videos}


def _uploaded(arguments: Mapping[str, Any], envelope: Any) -> dict[str, Any]:
    video = _video(_result(envelope))
    return {"video": {**pick(video, "id", "status", "preview", "thumbnail", "created"),
                      "playback": pick(video.get("playback"), "hls", "dash")},
            "message": f"Cloudflare Stream is fetching {arguments['videoUrl']}"}


def _zone_file(arguments: Mapping[str, Any], text: Any) -> dict[str, Any]:
    return {"zone_file": str(text), "lines": len(str(text).splitlines())}


def _workers(arguments: Mapping[str, Any], envelope: Any) -> dict[str, Any]:
    scripts = [pick(script, "id", "created_on", "modified_on", "usage_model", "handlers")
               for script in _result(envelope) or []]
    return {"count": len(scripts), "workers": scripts}


def _purged(arguments: Mapping[str, Any], envelope: Any) -> dict[str, Any]:
    what = next((f"{len(arguments[kind])} {kind}" for kind in ("files", "tags", "hosts", "prefixes")
                 if arguments.get(kind)), "everything")
    return {"purge_id": (_result(envelope) or {}).get("id"), "message": f"Cache purged: {what}"}


# -- steps an operation declares ----------------------------------------------------------------------

async def _record_identity(cloudflare: CloudflareHandler, values: dict[str, Any]) -> None:
    """A PATCH names the record's type, name and content (and priority or data where it has them): Cloudflare's
    own file requires them in every body. They are today's values unless the update changes them, so nothing the
    update does not name is touched; proxied, ttl, comment and tags are sent only when named."""
    if values["overwrite"]:
        return
    current = _result(await cloudflare.envelope(GET(RECORD_PATH), values, _RECORD))
    identity = {key: current[key] for key in ("type", "name", "content", "priority", "data")
                if current.get(key) is not None}
    values["updateData"] = {**identity, **{key: value for key, value in values["updateData"].items()
                                           if value is not None}}


async def _analytics_query(cloudflare: CloudflareHandler, values: dict[str, Any]) -> None:
    """The GraphQL query for the span: hourly groups up to three days, daily groups beyond."""
    now = datetime.fromtimestamp(cloudflare.clock(), UTC)
    until = _moment(values["until"], now, "until") if values["until"] is not None else now
    since = _moment(values["since"], now, "since") if values["since"] is not None else until - timedelta(hours=24)
    if since >= until:
        raise InvalidParams("Invalid arguments for get-analytics: since must come before until",
                            {"errors": [{"field": "since", "message": "must come before until"}]})
    hourly = until - since <= HOURLY_LIMIT
    values.update(since=iso_utc(since.timestamp()), until=iso_utc(until.timestamp()), hourly=hourly,
                  query=HOURLY_QUERY if hourly else DAILY_QUERY,
                  variables={"zoneTag": values["zone_id"],
                             "since": _graphql_time(since, hourly), "until": _graphql_time(until, hourly)})


def _moment(value: str | int, now: datetime, field: str) -> datetime:
    """An ISO-8601 time, or minutes from now as upstream took them (-1440: a day ago)."""
    text = str(value).strip()
    try:
        if text.lstrip("-").isdigit():
            return now + timedelta(minutes=int(text))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParams(f"Invalid arguments for get-analytics: {field}: not an ISO-8601 time or minutes ago",
                            {"errors": [{"field": field, "message": "an ISO-8601 time or minutes ago"}]}) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _graphql_time(moment: datetime, hourly: bool) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if hourly else moment.strftime("%Y-%m-%d")


_SUMS = "sum { requests cachedRequests bytes cachedBytes threats pageViews } uniq { uniques }"
HOURLY_QUERY = (
    "query ($zoneTag: string, $since: Time, $until: Time) { viewer { zones(filter: {zoneTag: $zoneTag}) { "
    "httpRequests1hGroups(limit: 1000, filter: {datetime_geq: $since, datetime_lt: $until}, "
    f"orderBy: [datetime_ASC]) {{ dimensions {{ datetime }} {_SUMS} }} }} }} }}")
DAILY_QUERY = (
    "query ($zoneTag: string, $since: Date, $until: Date) { viewer { zones(filter: {zoneTag: $zoneTag}) { "
    "httpRequests1dGroups(limit: 1000, filter: {date_geq: $since, date_leq: $until}, "
    f"orderBy: [date_ASC]) {{ dimensions {{ date }} {_SUMS} }} }} }} }}")


def _analytics(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    zones = ((answer.get("data") or {}).get("viewer") or {}).get("zones") or [{}]
    groups = zones[0].get("httpRequests1hGroups" if arguments["hourly"] else "httpRequests1dGroups") or []
    series = [{"time": next(iter((group.get("dimensions") or {}).values()), None), **(group.get("sum") or {}),
               "uniques": (group.get("uniq") or {}).get("uniques")} for group in groups]
    fields = ("requests", "cachedRequests", "bytes", "cachedBytes", "threats", "pageViews")
    return {"since": arguments["since"], "until": arguments["until"],
            "granularity": "hour" if arguments["hourly"] else "day",
            "totals": {name: sum(point.get(name) or 0 for point in series) for name in fields}, "series": series}


_RECORD = Target("dns record", "recordId")
_VIDEO = Target("video", "videoId")
_ZONE = Target("zone", "zone")

CLOUDFLARE_OPERATIONS: tuple[CloudflareOperation, ...] = (
    _op("stream-upload", StreamUploadArgs, "write", "Have Stream fetch a video from a URL",
        Route("POST", STREAM + "/copy", body=("url=videoUrl", "meta", "creator", "requireSignedURLs", "allowedOrigins",
                                              "thumbnailTimestampPct", "scheduledDeletion", "watermark")),
        label="video_uploaded", cap=400, group="stream", aliases=("upload-video",), shape=_uploaded),
    _op("stream-list", StreamListArgs, "read", "Stream videos, newest first",
        GET(STREAM, "status", "creator", "search", "start", "end", "asc", "limit"), label="list_videos", cap=300,
        group="stream", aliases=("list-videos",), shape=_videos),
    _op("stream-get", VideoArgs, "read", "One Stream video", GET(STREAM + "/{videoId}"), label="get_video", cap=200,
        group="stream", aliases=("get-video",), target=_VIDEO,
        shape=lambda arguments, envelope: {"video": pick(_video(_result(envelope)), "id", "status", "meta", "created",
                                                         "modified", "size", "duration", "input", "playback",
                                                         "preview", "thumbnail")}),
    _op("stream-delete", VideoArgs, "destructive", "Delete a Stream video", Route("DELETE", STREAM + "/{videoId}"),
        label="video_deleted", cap=200, group="stream", aliases=("delete-video",), target=_VIDEO,
        shape=lambda arguments, envelope: {"video_id": arguments["videoId"],
                                           "message": f"Video {arguments['videoId']} deleted"}),
    _op("dns-list", DnsListArgs, "read", "A zone's DNS records",
        GET(ZONE_PATH + "/dns_records", "type", "name", "content", "proxied", "search", "order", "direction",
            "match", "page", "per_page=limit"),
        label="list_dns_records", cap=250, group="dns", aliases=("list-dns-records", "dns-list-records"),
        target=_ZONE, shape=_records),
    _op("dns-create", DnsCreateArgs, "write", "Add a DNS record",
        Route("POST", ZONE_PATH + "/dns_records", body_from="recordData"), label="dns_record_created", cap=250,
        group="dns", aliases=("create-dns-record",), target=_ZONE,
        shape=_changed_record("{recordData[type]} record {recordData[name]} created")),
    _op("dns-update", DnsUpdateArgs, "write",
        "Change a DNS record's named fields (the others stay); overwrite replaces the whole record",
        Route("PUT", RECORD_PATH, body_from="updateData", when="overwrite"),
        Route("PATCH", RECORD_PATH, body_from="updateData"), label="dns_record_updated", cap=250, group="dns",
        aliases=("update-dns-record",), target=_RECORD, prepare=(_record_identity,),
        shape=_changed_record("Record {recordId} updated")),
    _op("dns-delete", RecordArgs, "destructive", "Delete a DNS record", Route("DELETE", RECORD_PATH),
        label="dns_record_deleted", cap=200, group="dns", aliases=("delete-dns-record",), target=_RECORD,
        shape=lambda arguments, envelope: {"record_id": (_result(envelope) or {}).get("id", arguments["recordId"]),
                                           "message": f"Record {arguments['recordId']} deleted"}),
    _op("list-zones", ListZonesArgs, "read", "The zones the token reaches",
        GET("/zones", "name", "status", "account.id=account", "order", "direction", "match", "page",
            "per_page=limit"), cap=250, group="zones", shape=_zones),
    _op("get-zone", ZoneArgs, "read", "One zone", GET(ZONE_PATH), cap=200, group="zones", target=_ZONE,
        shape=lambda arguments, envelope: {"zone": pick(_result(envelope), "id", "name", "status", "name_servers",
                                                        "created_on", "modified_on")}),
    _op("get-analytics", AnalyticsArgs, "read", "A zone's traffic: requests, cache, bandwidth, threats, page views",
        Route("POST", "/graphql", body=("query", "variables")), cap=300, group="zones", target=_ZONE,
        prepare=(_analytics_query,), answer="graphql", shape=_analytics),
    _op("health", NoArgs, "read", "Is Cloudflare up, and is the token active?", cap=50, group="account",
        aliases=("test",)),
    # What an on-call engineer reaches for next.
    _op("dns-get", RecordArgs, "read", "One DNS record", GET(RECORD_PATH), group="dns", target=_RECORD,
        shape=lambda arguments, envelope: {"record": _record(_result(envelope), *RECORD, "comment", "tags",
                                                             "priority", "data", "created_on", "modified_on")}),
    _op("dns-export", ZoneArgs, "read", "A zone's records as a BIND zone file (before bulk edits)",
        GET(ZONE_PATH + "/dns_records/export"), group="dns", target=_ZONE, answer="text", shape=_zone_file),
    _op("purge-cache", PurgeArgs, "write", "Purge cached files, tags, hosts or prefixes",
        Route("POST", ZONE_PATH + "/purge_cache", body=("files", "tags", "hosts", "prefixes")), group="zones",
        aliases=("cache-purge",), target=_ZONE, shape=_purged),
    _op("purge-everything", ZoneArgs, "destructive", "Purge everything the zone has cached",
        Route("POST", ZONE_PATH + "/purge_cache", constants={"purge_everything": True}), group="zones",
        target=_ZONE, shape=_purged),
    _op("stream-direct-upload", DirectUploadArgs, "write", "A one-time URL a client uploads a video to",
        Route("POST", STREAM + "/direct_upload", body=("maxDurationSeconds", "expiry", "meta")), group="stream",
        shape=lambda arguments, envelope: pick(_result(envelope), "uploadURL", "uid")),
    _op("list-workers", NoArgs, "read", "The account's Workers scripts", GET("/accounts/{account_id}/workers/scripts"),
        group="account", shape=_workers),
)


# -- the handler ------------------------------------------------------------------------------------------

class CloudflareHandler(ServiceHandler):
    service = "cloudflare"
    operations = OperationTable(CLOUDFLARE_OPERATIONS, groups=("dns", "zones", "stream", "account"))

    def __init__(self, api_url: str, token: str, account_id: str, zone_id: str | None = None,
                 timeout_seconds: float = 30.0, clock: Clock = system_clock) -> None:
        self._api = UpstreamClient(api_url.strip().rstrip("/"), {"Authorization": f"Bearer {token}",
                                                                 "Accept": "application/json"}, timeout_seconds)
        self._account_id = account_id
        self._default_zone = zone_id
        self._zone_ids: dict[str, str] = {}  # zone name → id, as resolved
        self._resolving = asyncio.Lock()
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        return cls(settings.setting("CLOUDFLARE_API_URL") or CLOUDFLARE_API_URL,
                   settings.setting("CLOUDFLARE_API_TOKEN") or "", settings.setting("CLOUDFLARE_ACCOUNT_ID") or "",
                   settings.setting("CLOUDFLARE_ZONE_ID"), settings.upstream_timeout_seconds, clock)

    async def aclose(self) -> None:
        await self._api.aclose()

    # -- executing ----------------------------------------------------------------------------------

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        declared = cast(CloudflareOperation, operation)  # this handler's table holds only CloudflareOperations
        values = {**args.model_dump(mode="json"), "account_id": self._account_id}
        if not declared.routes:
            return await self._health_result()
        data: dict[str, Any] = {"operation": declared.label}
        if "zone" in values:
            values["zone_id"] = data["zone_id"] = await self.zone_id(values["zone"])
        for prepare in declared.prepare:
            await prepare(self, values)
        response = await self.request(choose_route(declared.routes, values), values, declared.target)
        answer = _read(response, declared.answer)
        data.update(declared.shape(values, answer) if declared.shape else {"result": _result(answer)})
        return data

    async def request(self, route: Route, values: Mapping[str, Any], target: Target | None) -> UpstreamResponse:
        response = await send(self._api, "Cloudflare", "CLOUDFLARE_API_URL", route.method, route.url_path(values),
                              params=route.query_params(values), json_body=route.json_body(values))
        _raise_for_status(response, *_subject(values, target))
        return response

    async def envelope(self, route: Route, values: Mapping[str, Any], target: Target | None = None) -> Any:
        return _read(await self.request(route, values, target), "envelope")

    async def zone_id(self, zone: str | None) -> str:
        """The zone's id: given as one, looked up by name (once), or CLOUDFLARE_ZONE_ID when none is given."""
        zone = zone or self._default_zone
        if not zone:
            raise InvalidParams("Invalid arguments: no zone given and CLOUDFLARE_ZONE_ID is not set",
                                {"errors": [{"field": "zone", "message": "give a zone id or name"}]})
        if ZONE_ID.fullmatch(zone):
            return zone
        async with self._resolving:
            if zone not in self._zone_ids:
                found = _result(await self.envelope(GET("/zones", "name"), {"name": zone}, _ZONE)) or []
                if not found:
                    raise ResourceNotFound(f"Cloudflare has no zone {zone!r} this token can see",
                                           {"kind": "zone", "id": zone})
                self._zone_ids[zone] = str(found[0]["id"])
        return self._zone_ids[zone]

    # -- health -------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        report, _ = await self._health()
        return report

    async def _health(self) -> tuple[HealthReport, dict[str, Any]]:
        """The token (an account token at its account's route, else a user token at the user's), then the
        default zone; degraded when Cloudflare answers but refuses, down when it cannot be reached or fails."""
        started = time.perf_counter()
        details: dict[str, Any] = {}
        try:
            try:
                verified = await self.envelope(GET("/accounts/{account_id}/tokens/verify"),
                                               {"account_id": self._account_id})
            except (ServiceUnavailable, ResourceNotFound) as refused:
                if (refused.data or {}).get("upstreamStatus", 500) >= 500:
                    raise
                verified = await self.envelope(GET("/user/tokens/verify"), {})
            token = _result(verified) or {}
            details.update(token_status=token.get("status"), expires_on=token.get("expires_on"))
            if token.get("status") != "active":
                inactive = f"the Cloudflare token is {token.get('status')}: check CLOUDFLARE_API_TOKEN"
                return HealthReport("degraded", ms_since(started), inactive), details
            if self._default_zone:
                zone = _result(await self.envelope(GET(ZONE_PATH), {"zone_id": await self.zone_id(None)}, _ZONE))
                details["zone"] = pick(zone, "id", "name", "status")
        except GatewayError as error:
            answered = (error.data or {}).get("upstreamStatus", 500) < 500 or isinstance(error, RateLimitExceeded)
            return HealthReport("degraded" if answered else "down", ms_since(started), error.message), details
        zone_text = f"; zone {details['zone']['name']} is {details['zone']['status']}" if "zone" in details else ""
        return HealthReport("healthy", ms_since(started), f"Cloudflare token active{zone_text}"), details

    async def _health_result(self) -> dict[str, Any]:
        return health_answer("Cloudflare", *await self._health())


def _read(response: UpstreamResponse, answer: Answer) -> Any:
    """The reply as the operation reads it; a GraphQL reply's `errors` (sent with HTTP 200) raised."""
    if answer == "text":
        return response.text
    body = json_answer(response)
    if answer == "graphql":
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            messages = "; ".join(str(error.get("message", error)) for error in errors if isinstance(error, dict))
            data = {"service": "cloudflare", "upstreamStatus": response.status, "errors": errors}
            if "not authorized" in messages.lower():
                raise ServiceUnavailable(f"Cloudflare analytics refused the token: {messages} (needs Analytics Read)",
                                         data)
            raise ValidationFailed(f"Cloudflare analytics: {messages}", data)
    return body


def _subject(values: Mapping[str, Any], target: Target | None) -> tuple[str, str]:
    if target is None:
        return "resource", ""
    return target.kind, str(values.get(target.argument) or values.get("zone_id") or "")


def _raise_for_status(response: UpstreamResponse, kind: str, identifier: str) -> None:
    """Cloudflare's errors as the gateway's (services.md, cloudflare "Errors"): the HTTP status first, then the
    codes in `errors[]`; both are passed on in `data`."""
    body = json_answer(response)
    envelope = body if isinstance(body, dict) else {}
    if response.status < 300 and envelope.get("success") is not False:
        return
    errors = [pick(error, "code", "message") for error in envelope.get("errors") or [] if isinstance(error, dict)]
    codes = {error.get("code") for error in errors}
    message = "; ".join(f"{error['message']} ({error['code']})" for error in errors) or str(body)[:200]
    data: dict[str, Any] = {"service": "cloudflare", "upstreamStatus": response.status, "errors": errors}
    status = response.status
    if status in (401, 403) or (status < 500 and status != 404 and codes & AUTH_CODES):
        raise ServiceUnavailable(f"Cloudflare refused the token: {message}: check CLOUDFLARE_API_TOKEN and its "
                                 "permissions", data)
    if status == 404 or codes & NOT_FOUND_CODES:
        raise ResourceNotFound(f"Cloudflare: {kind} {identifier} not found: {message}",
                               {**data, "kind": kind, "id": identifier})
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        retry_ms = int(retry_after) * 1000 if retry_after.isdigit() else 60_000
        raise RateLimitExceeded(f"Cloudflare rate limit (1,200 requests per 5 minutes): {message}",
                                {**data, "limit": 1200, "windowMs": 300_000, "identifier": "cloudflare",
                                 "retryAfterMs": retry_ms})
    if status >= 500:
        raise ServiceUnavailable(f"Cloudflare failed ({status}): {message}", data)
    if status == 409 or codes & EXISTS_CODES:
        raise Conflict(f"Cloudflare: {message}", data)
    raise ValidationFailed(f"Cloudflare rejected the request: {message}", data)
