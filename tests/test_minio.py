"""The minio handler through the gateway over real HTTP, against moto's S3 server (tests/s3_server.py): uploads
with their checks, pages that lose nothing, presigned URLs that work and expire when asked, the extras, health,
S3's errors as the gateway's, a zero cost, and the upstream bugs not to repeat."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway_core.handlers.minio import MINIO_OPERATIONS, MinioHandler
from tests.agent_client import AgentClient
from tests.ports import free_port
from tests.s3_server import REGION, S3Server, running_s3
from tests.servers import RunningGateway, run_gateway, serve_asgi, service_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")
FILE = b"%PDF-1.4 a small pdf, not really" * 10
FILE_BASE64 = base64.b64encode(FILE).decode()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with running_s3() as server:
        s3_client(server).create_bucket(Bucket="media")
        yield server


def s3_client(server: S3Server) -> Any:
    return boto3.client("s3", endpoint_url=server.url, region_name=REGION, aws_access_key_id=server.access_key,
                        aws_secret_access_key=server.secret_key)


def minio_settings(server: S3Server, **overrides: Any) -> dict[str, Any]:
    return {"minio_endpoint": server.endpoint, "minio_access_key": server.access_key,
            "minio_secret_key": server.secret_key, "allowed_file_types": " Application/PDF , image/* ",
            "health": {"interval_seconds": 3600},
            "rate_limit": {"per_service": {"minio": {"max_requests": 100_000, "window_ms": 60_000}}}, **overrides}


@contextlib.asynccontextmanager
async def minio_gateway(tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[AgentClient, RunningGateway]]:
    store = Path(tempfile.mkdtemp(dir=tmp_path)) / "gw.db"  # one store per gateway: a test may start several
    async with service_gateway(store, "minio", ("uploader", "uploader"), handler_classes={"minio": MinioHandler},
                               **settings) as (gateway, token):
        yield AgentClient(gateway.url, token, "minio"), gateway


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def minio(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AgentClient]:
    async with minio_gateway(tmp_path_factory.mktemp("minio"), **minio_settings(s3)) as (client, _):
        yield client



# -- upload ----------------------------------------------------------------------------------------


async def test_upload_stores_the_file_with_its_metadata_and_returns_a_working_url(minio: AgentClient,
                                                                                  s3: S3Server) -> None:
    data = await minio.data("upload", ["media", "docs/report.pdf", FILE_BASE64, "application/pdf",
                                       {"uploadedBy": "alice", "entityScope": "course:7"}])
    assert (data["fileKey"], data["bucket"], data["size"], data["contentType"]) == (
        "docs/report.pdf", "media", len(FILE), "application/pdf")
    assert data["metadata"] == {"uploadedBy": "alice", "entityScope": "course:7", "originalFilename": "report.pdf"}
    head = s3_client(s3).head_object(Bucket="media", Key="docs/report.pdf")
    assert head["ContentType"] == "application/pdf" and head["Metadata"]["x-uploaded-by"] == "alice"
    assert head["Metadata"]["x-md5-checksum"] == data["checksumMd5"] == head["ETag"].strip('"')
    async with httpx.AsyncClient() as client:
        assert (await client.get(data["url"])).content == FILE


async def test_a_file_named_in_any_language_uploads_and_stat_reads_its_metadata_back(minio: AgentClient,
                                                                                 s3: S3Server) -> None:
    """S3 metadata travels in headers, US-ASCII only: the client refused `Größe.pdf` as a filename, so the upload
    failed (after creating a missing bucket, where that is on)."""
    data = await minio.data("upload", ["media", "kurse/Größe 100%.pdf", FILE_BASE64, "application/pdf",
                                       {"entityScope": "Kurs \u2013 Ozean\nLicht"}])
    stat = await minio.data("stat", ["media", "kurse/Größe 100%.pdf"])
    head = s3_client(s3).head_object(Bucket="media", Key="kurse/Größe 100%.pdf")
    assert data["metadata"]["originalFilename"] == "Größe 100%.pdf"
    assert stat["metadata"]["x-original-filename"] == "Größe 100%.pdf"
    assert stat["metadata"]["x-entity-scope"] == "Kurs \u2013 Ozean\nLicht"
    assert head["Metadata"]["x-original-filename"] == "=?UTF-8?B?R3LDtsOfZSAxMDAlLnBkZg==?="  # what S3 holds
    s3_client(s3).put_object(Bucket="media", Key="plain", Body=b"x", Metadata={"x-entity-scope": "a%41b =?x?="})
    assert (await minio.data("stat", ["media", "plain"]))["metadata"] == {"x-entity-scope": "a%41b =?x?="}


@pytest.mark.parametrize(("content_type", "accepted"), [
    ("application/pdf", True), ("image/png", True), ("IMAGE/JPEG; charset=binary", True),
    ("video/mp4", False), ("application/zip", False), ("text/html", False)])
async def test_the_allow_list_is_trimmed_lower_cased_and_takes_whole_types(minio: AgentClient, content_type: str,
                                                                           accepted: bool) -> None:
    response = await minio.call("upload", {"bucket": "media", "fileKey": "t/file", "fileBuffer": FILE_BASE64,
                                           "contentType": content_type})
    body = response.json()
    assert ("result" in body) is accepted, body
    if not accepted:
        assert body["error"]["code"] == -32009
        assert body["error"]["data"]["allowedTypes"] == ["application/pdf", "image/*"]


async def test_size_is_checked_from_the_base64_length_before_decoding(s3: S3Server, tmp_path: Path) -> None:
    not_base64 = "!" * 4000  # about 3,000 bytes: too big, and not even base64
    async with minio_gateway(tmp_path, **minio_settings(s3, max_file_size_mb=0.002)) as (client, _):
        too_big = await client.error("upload", ["media", "big.pdf", not_base64, "application/pdf"])
    assert too_big["code"] == -32009 and too_big["data"] == {"fileSize": 3000, "maxSize": 2097,
                                                             "limit": "MAX_FILE_SIZE_MB",
                                                             "maxRequestFileSize": 786_432}


async def test_a_file_over_the_request_size_limit_is_refused_by_the_gateway_itself(minio: AgentClient) -> None:
    error = await minio.error("upload", ["media", "big.pdf", "A" * 1_100_000, "application/pdf"])
    assert error["http"] == 413 and error["code"] == -32600


@pytest.mark.parametrize("encoded", ["not base64!", "QUJD=Q==", base64.b64encode(b"x").decode()[:-1]])
async def test_invalid_base64_is_refused_never_stored(minio: AgentClient, s3: S3Server, encoded: str) -> None:
    error = await minio.error("upload", ["media", "bad/file.pdf", encoded, "application/pdf"])
    assert error["code"] == -32602 and error["data"]["errors"][0]["field"] == "fileBuffer"
    assert "Contents" not in s3_client(s3).list_objects_v2(Bucket="media", Prefix="bad/")


async def test_a_missing_bucket_is_not_found_unless_auto_create_is_on(minio: AgentClient, s3: S3Server,
                                                                      tmp_path: Path) -> None:
    error = await minio.error("upload", ["typo-bucket", "a.pdf", FILE_BASE64, "application/pdf"])
    assert error["code"] == -32007 and error["data"]["kind"] == "bucket"
    assert "typo-bucket" not in [b["Name"] for b in s3_client(s3).list_buckets()["Buckets"]]
    async with minio_gateway(tmp_path, **minio_settings(s3, minio_auto_create_buckets=True)) as (client, _):
        made = await client.data("upload", ["fresh-bucket", "a.pdf", FILE_BASE64, "application/pdf"])
    assert made["bucket"] == "fresh-bucket"
    assert s3_client(s3).get_bucket_location(Bucket="fresh-bucket")["LocationConstraint"] in (None, REGION)


# -- list, getUrl, delete, stat, extras ------------------------------------------------------------


async def test_pages_lose_no_object_and_folders_come_as_prefixes(minio: AgentClient, s3: S3Server) -> None:
    client = s3_client(s3)
    client.create_bucket(Bucket="paged")
    keys = [f"k{n:02d}" for n in range(7)] + ["dir/a", "dir/b"]
    for key in keys:
        client.put_object(Bucket="paged", Key=key, Body=b"x")
    seen: list[str] = []
    folders: list[str] = []
    marker = None
    for _ in range(10):
        page = await minio.data("list", {"bucket": "paged", "limit": 3, "marker": marker})
        seen += [file["key"] for file in page["files"]]
        folders += page["prefixes"]
        assert all(file["key"] for file in page["files"])
        if not page["truncated"]:
            break
        marker = page["nextMarker"]
        assert marker == max([file["key"] for file in page["files"]] + page["prefixes"])  # the last one returned
    assert sorted(seen) == [f"k{n:02d}" for n in range(7)] and folders == ["dir/"]
    everything = await minio.data("list", ["paged", "", 100, None, True])
    assert everything["count"] == 9 and everything["truncated"] is False and everything["nextMarker"] is None
    too_many = await minio.error("list", {"bucket": "paged", "limit": 1001})
    assert too_many["code"] == -32602


async def test_get_url_checks_the_object_and_says_when_the_url_expires(minio: AgentClient, s3: S3Server) -> None:
    s3_client(s3).put_object(Bucket="media", Key="v/clip.mp4", Body=b"clip")
    default = await minio.data("getUrl", ["media", "v/clip.mp4"])
    week = await minio.data("get-url", {"bucket": "media", "fileKey": "v/clip.mp4", "expirySeconds": 604_800})
    assert default["expiresIn"] == 300 and week["expiresIn"] == 604_800
    assert parse_qs(urlsplit(week["url"]).query)["X-Amz-Expires"] == ["604800"]
    expires_at = datetime.datetime.fromisoformat(default["expiresAt"].replace("Z", "+00:00"))
    assert abs((expires_at - datetime.datetime.now(datetime.UTC)).total_seconds() - 300) < 60
    async with httpx.AsyncClient() as client:
        assert (await client.get(default["url"])).content == b"clip"
    assert (await minio.error("getUrl", ["media", "v/clip.mp4", 604_801]))["code"] == -32602
    missing = await minio.error("getUrl", ["media", "v/none.mp4"])
    assert missing["code"] == -32007 and missing["data"]["id"] == "media/v/none.mp4"


async def test_delete_and_stat(minio: AgentClient, s3: S3Server) -> None:
    s3_client(s3).put_object(Bucket="media", Key="old.png", Body=b"png", ContentType="image/png",
                             Metadata={"x-entity-scope": "user:1"})
    stat = await minio.data("stat", ["media", "old.png"])
    assert (stat["size"], stat["contentType"], stat["metadata"]) == (3, "image/png", {"x-entity-scope": "user:1"})
    deleted = await minio.data("delete", ["media", "old.png"])
    assert deleted["success"] is True and deleted["deletedAt"].endswith("Z")
    again = await minio.error("delete", ["media", "old.png"])
    assert again["code"] == -32007 and (await minio.error("stat", ["media", "old.png"]))["code"] == -32007


async def test_list_buckets_copy_and_bucket_usage(minio: AgentClient, s3: S3Server) -> None:
    client = s3_client(s3)
    client.create_bucket(Bucket="usage")
    for n in range(5):
        client.put_object(Bucket="usage", Key=f"logs/{n}", Body=b"x" * (n + 1))
    buckets = await minio.data("list-buckets")
    assert "usage" in [bucket["name"] for bucket in buckets["buckets"]] and buckets["count"] == len(buckets["buckets"])
    copied = await minio.data("copy", {"bucket": "usage", "fileKey": "logs/4", "destinationKey": "copies/4",
                                       "destinationBucket": "media"})
    assert copied["destinationBucket"] == "media"
    assert client.get_object(Bucket="media", Key="copies/4")["Body"].read() == b"xxxxx"
    usage = await minio.data("bucket-usage", ["usage", "logs/"])
    assert (usage["objects"], usage["bytes"]) == (5, 15)


# -- arguments -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["/etc/passwd", "a/../b", "bad\x07key", "..", ""])
async def test_keys_that_escape_or_hide_are_refused_before_anything(minio: AgentClient, key: str) -> None:
    error = await minio.error("stat", {"bucket": "media", "fileKey": key})
    assert error["code"] == -32602 and error["data"]["errors"][0]["field"] == "fileKey"


async def test_the_default_bucket_and_a_missing_one(s3: S3Server, tmp_path: Path, minio: AgentClient) -> None:
    s3_client(s3).put_object(Bucket="media", Key="d.txt", Body=b"d")
    refused = await minio.error("stat", {"fileKey": "d.txt"})
    assert refused["code"] == -32602 and refused["data"]["errors"][0]["field"] == "bucket"
    async with minio_gateway(tmp_path, **minio_settings(s3, minio_default_bucket="media")) as (client, _):
        assert (await client.data("stat", {"fileKey": "d.txt"}))["size"] == 1
        slashed = (await client.slash("/mcp-minio stat media d.txt")).json()
    assert slashed["result"]["data"]["size"] == 1


# -- health, errors, cost ------------------------------------------------------------------------------


async def test_health_reports_buckets_and_a_down_server_is_an_error(minio: AgentClient, s3: S3Server,
                                                                    tmp_path: Path) -> None:
    health = await minio.data("health")
    assert health["healthy"] is True and health["service"] == "minio" and health["bucketsCount"] >= 1
    closed = minio_settings(s3, minio_endpoint=f"127.0.0.1:{free_port()}")
    async with minio_gateway(tmp_path, **closed) as (client, gateway):
        down = await client.error("health")
        assert gateway.gateway.service_status("minio") == "down"
        refused = await client.error("list-buckets")
    assert down["code"] == -32001 and down["data"]["healthy"] is False and refused["code"] == -32001


async def test_sigv4_is_checked_and_refused_keys_are_configuration_errors(tmp_path: Path) -> None:
    with running_s3(check_signatures=True) as server:
        async with minio_gateway(tmp_path, **minio_settings(server)) as (client, gateway):
            assert (await client.data("list-buckets"))["count"] == 0  # signed with the IAM keys: accepted
            assert (await gateway.gateway.health.check("minio")).status == "healthy"
        for access_key, secret_key, code in ((server.access_key, "wrong-secret", "SignatureDoesNotMatch"),
                                             ("AKIANOSUCHKEY0000000", server.secret_key, "InvalidAccessKeyId")):
            settings = minio_settings(server, minio_access_key=access_key, minio_secret_key=secret_key)
            async with minio_gateway(tmp_path, **settings) as (client, gateway):
                refused = await client.error("list-buckets")
                head = await client.error("stat", ["media", "x"])  # HeadObject: not "file not found"
                report = await gateway.gateway.health.check("minio")
            assert refused["code"] == -32001 and refused["data"]["code"] == code
            assert head["code"] == -32001 and report.status == "degraded"
            assert "wrong-secret" not in json.dumps(refused) + report.message


def _failing_s3(status: int, code: str, delay: float = 0.0) -> Starlette:
    """An S3 server whose health routes and ListBuckets work, and whose every bucket answers with `code`."""
    async def buckets(request: Request) -> Response:
        return Response("<?xml version='1.0'?><ListAllMyBucketsResult><Buckets></Buckets></ListAllMyBucketsResult>",
                        media_type="application/xml")

    async def failing(request: Request) -> Response:
        await asyncio.sleep(delay)
        return Response(f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{code}</Message></Error>",
                        status, media_type="application/xml")

    return Starlette(routes=[Route("/", buckets), Route("/minio/health/{probe}", buckets),
                             Route("/{path:path}", failing, methods=["GET", "HEAD", "PUT", "DELETE", "POST"])])


@pytest.mark.parametrize(("status", "code", "expected"), [
    (503, "SlowDown", -32005), (500, "InternalError", -32001), (400, "InvalidBucketName", -32009),
    (400, "InvalidArgument", -32009), (400, "EntityTooLarge", -32009), (404, "NoSuchBucket", -32007),
    (403, "AccessDenied", -32001), (403, "RequestTimeTooSkewed", -32001)])
async def test_s3_error_codes_map_as_the_spec_says(s3: S3Server, tmp_path: Path, status: int, code: str,
                                                   expected: int) -> None:
    async with serve_asgi(_failing_s3(status, code)) as url:
        settings = minio_settings(s3, minio_endpoint=url.removeprefix("http://"))
        async with minio_gateway(tmp_path, **settings) as (client, _):
            error = await client.error("list", ["media"])
    assert error["code"] == expected, error


async def test_a_slow_server_is_a_timeout(s3: S3Server, tmp_path: Path) -> None:
    async with serve_asgi(_failing_s3(200, "none", delay=1.0)) as url:
        settings = minio_settings(s3, minio_endpoint=url.removeprefix("http://"), http_timeout_ms=200)
        async with minio_gateway(tmp_path, **settings) as (client, _):
            error = await client.error("list", ["media"])
    assert error["code"] == -32006


async def test_cost_is_a_real_zero_and_tokens_are_the_specs(minio: AgentClient, s3: S3Server) -> None:
    s3_client(s3).put_object(Bucket="media", Key="c.txt", Body=b"c")
    result = await minio.result("getUrl", ["media", "c.txt"])
    assert (result["metadata"]["cost"], result["metadata"]["tokensUsed"]) == (0, 5)
    listed = await minio.result("list-buckets")
    assert listed["metadata"]["cost"] == 0 and listed["metadata"]["tokensUsed"] == 5 * listed["data"]["count"]
    files = await minio.result("list", ["media"])
    assert files["metadata"]["tokensUsed"] == 10 * files["data"]["count"] > 0
    uploaded = await minio.result("upload", {"bucket": "media", "fileKey": "big.pdf", "contentType": "application/pdf",
                                             "fileBuffer": base64.b64encode(b"x" * 3000).decode()})
    assert uploaded["metadata"]["tokensUsed"] == 3  # ceil(3000 / 1024)
    assert all(operation.cost_usd == 0.0 for operation in MINIO_OPERATIONS)


async def test_top_level_params_are_arguments_as_the_admin_app_sends_them(minio: AgentClient, s3: S3Server) -> None:
    s3_client(s3).put_object(Bucket="media", Key="top.txt", Body=b"t")
    data = await minio.data("stat", None, bucket="media", fileKey="top.txt")
    named_wins = await minio.data("stat", {"fileKey": "top.txt"}, bucket="media", fileKey="elsewhere.txt")
    assert data["size"] == 1 and named_wins["size"] == 1


async def test_not_configured_without_keys_no_minioadmin_default(s3: S3Server, tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db", extra_specs=(), handler_classes={"minio": MinioHandler},
                           minio_endpoint=s3.endpoint) as gateway:
        _, token = await gateway.add_agent()
        error = await AgentClient(gateway.url, token, "minio").error("list-buckets")
    assert error["code"] == -32001 and "MINIO_ACCESS_KEY" in error["message"]


async def test_file_bodies_are_never_logged_or_echoed(minio: AgentClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        error = await minio.error("upload", ["no-such-bucket", "x.pdf", FILE_BASE64, "application/pdf"])
    assert error["code"] == -32007
    assert FILE_BASE64[:40] not in caplog.text + json.dumps(error)
