"""MinIO (any S3-compatible server): objects uploaded from base64 with the upstream's checks, listed a page at a
time, presigned for download, inspected and deleted, with SigV4 through MinIO's own Python client
(shared/spec/services.md, minio).

Every operation is declared once with what it does on the client (run in a worker thread: the client blocks);
S3's error codes decide the gateway's error. Arguments come named, or positional in the upstream capability's
order; a call that names no bucket uses MINIO_DEFAULT_BUCKET. Uploads are checked (type, then size from the
base64's length, then a strict decode) before anything is sent, and bodies are never logged or echoed."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import hashlib
import io
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Self, cast
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from gateway_core.clock import Clock, system_clock
from gateway_core.config import Settings
from gateway_core.errors import (
    GatewayError,
    InvalidParams,
    RateLimitExceeded,
    ResourceNotFound,
    ServiceUnavailable,
    UpstreamTimeout,
    ValidationFailed,
)
from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.caller import calling_agent
from gateway_core.health import HealthReport
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable, Picker, Target

if TYPE_CHECKING:
    from minio import Minio

MAX_PRESIGNED_SECONDS = 604_800  # SigV4's limit: seven days
# S3 carries metadata in headers, printable US-ASCII only; anything else goes as an RFC 2047 encoded word (as
# S3's own console writes it), which no plain value looks like: _stat reads it back, whoever wrote it.
ENCODED_WORD = ("=?UTF-8?B?", "?=")
S3_PAGE = 1000  # keys and folders in one ListObjectsV2 answer (the client asks for S3's most)


# -- argument models ---------------------------------------------------------------------------------


def _object_key(key: str) -> str:
    if key.startswith("/") or ".." in key.split("/") or any(ord(character) < 32 or ord(character) == 127
                                                            for character in key):
        raise ValueError("a key has no leading '/', no '..' segment and no control characters")
    return key


ObjectKey = Annotated[str, Field(min_length=1, max_length=1024, description="the object's key, e.g. videos/a.mp4"),
                      AfterValidator(_object_key)]
BUCKET = Field(None, min_length=1, max_length=63, description="the bucket (default: MINIO_DEFAULT_BUCKET)")


class ObjectArgs(OperationArgs):
    """The upstream's argument names (camelCase), which agents send."""

    bucket: str | None = BUCKET
    fileKey: ObjectKey


class UploadArgs(ObjectArgs):
    fileBuffer: str = Field(min_length=1, repr=False, description="the file, base64")
    contentType: str = Field(min_length=3, max_length=255)
    metadata: dict[str, str] = Field(default_factory=dict,
                                     description="uploadedBy, entityScope, originalFilename (stored with the object)")


class ListArgs(OperationArgs):
    bucket: str | None = BUCKET
    prefix: str = ""
    limit: int = Field(100, ge=1, le=1000)
    marker: str | None = Field(None, description="the nextMarker of the page before")
    recursive: bool = Field(False, description="every key under the prefix, not one level")


class GetUrlArgs(ObjectArgs):
    expirySeconds: int | None = Field(None, ge=1, le=MAX_PRESIGNED_SECONDS,
                                      description="how long the URL works (default PRESIGNED_URL_EXPIRY_SECONDS)")


class CopyArgs(ObjectArgs):
    destinationKey: ObjectKey
    destinationBucket: str | None = Field(None, min_length=1, max_length=63,
                                          description="default: the source's bucket")


class UsageArgs(OperationArgs):
    bucket: str | None = BUCKET
    prefix: str = ""


# -- the declarations --------------------------------------------------------------------------------

Runner = Callable[["MinioHandler", dict[str, Any]], dict[str, Any]]  # blocking: runs in a worker thread


@dataclass(frozen=True, slots=True)
class MinioOperation(Operation):
    run: Runner | None = None  # None: the health check answers


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z") if moment else None


def _upload(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    body = handler.checked_upload(values["fileBuffer"], values["contentType"])
    bucket, key = values["bucket"], values["fileKey"]
    handler.ensure_bucket(bucket)
    checksum = hashlib.md5(body, usedforsecurity=False).hexdigest()
    given = values["metadata"]
    stored = {"uploadedBy": given.get("uploadedBy") or calling_agent(), "entityScope": given.get("entityScope"),
              "originalFilename": given.get("originalFilename") or key.rsplit("/", 1)[-1]}
    headers = {"X-Uploaded-By": _header_value(stored["uploadedBy"]),
               "X-Entity-Scope": _header_value(stored["entityScope"]),
               "X-Original-Filename": _header_value(stored["originalFilename"]), "X-MD5-Checksum": checksum}
    written = handler.client.put_object(bucket, key, io.BytesIO(body), len(body), content_type=values["contentType"],
                                        metadata={name: value for name, value in headers.items() if value})
    return {"fileKey": key, "bucket": bucket, "url": handler.presigned(bucket, key, None)["url"], "size": len(body),
            "etag": written.etag, "contentType": values["contentType"], "checksumMd5": checksum,
            "metadata": {name: value for name, value in stored.items() if value}}


def _list(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    limit = values["limit"]
    entries = handler.client.list_objects(values["bucket"], prefix=values["prefix"] or None,
                                          recursive=values["recursive"], start_after=values["marker"])
    # The client gives each S3 page's keys, then its folders: the page is put back in S3's order, so that the
    # next one, starting after the last entry returned, skips nothing. One entry past it says there is more.
    window = list(itertools.islice(entries, max(S3_PAGE, limit + 1)))
    page = sorted(window[:S3_PAGE], key=lambda entry: str(entry.object_name))[:limit]
    truncated = len(window) > limit
    files = [{"key": entry.object_name, "size": entry.size, "lastModified": _iso(entry.last_modified),
              "etag": (entry.etag or "").strip('"')} for entry in page if not entry.is_dir]
    return {"files": files, "prefixes": [entry.object_name for entry in page if entry.is_dir],
            "nextMarker": page[-1].object_name if truncated and page else None, "truncated": truncated,
            "count": len(files)}


def _get_url(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    handler.client.stat_object(values["bucket"], values["fileKey"])
    return handler.presigned(values["bucket"], values["fileKey"], values["expirySeconds"])


def _delete(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    handler.client.stat_object(values["bucket"], values["fileKey"])  # a missing object is -32007, not a success
    handler.client.remove_object(values["bucket"], values["fileKey"])
    return {"success": True, "bucket": values["bucket"], "fileKey": values["fileKey"],
            "deletedAt": _iso(handler.now())}


def _header_value(text: str | None) -> str | None:
    """A metadata value as S3 can carry it: printable US-ASCII as it is, anything else (a file named Größe.mp4,
    a control character) as an encoded word. The client refused such a value: the file could not be uploaded."""
    if text is None or (text.isascii() and text.isprintable()):
        return text
    return ENCODED_WORD[0] + base64.b64encode(text.encode()).decode() + ENCODED_WORD[1]


def _read_header_value(value: str) -> str:
    start, end = ENCODED_WORD
    if value.upper().startswith(start) and value.endswith(end):
        with contextlib.suppress(ValueError):  # not base64, or not UTF-8: shown as S3 holds it
            return base64.b64decode(value[len(start):-len(end)], validate=True).decode()
    return value


def _stat(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    found = handler.client.stat_object(values["bucket"], values["fileKey"])
    metadata = {name.removeprefix("x-amz-meta-"): value for name, value in (found.metadata or {}).items()
                if name.lower().startswith("x-amz-meta-")}
    metadata = {name: _read_header_value(value) for name, value in metadata.items()}
    return {"size": found.size, "lastModified": _iso(found.last_modified), "etag": (found.etag or "").strip('"'),
            "contentType": found.content_type, "metadata": metadata}


def _list_buckets(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    buckets = [{"name": bucket.name, "creationDate": _iso(bucket.creation_date)}
               for bucket in handler.client.list_buckets()]
    return {"buckets": buckets, "count": len(buckets)}


def _copy(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    from minio.commonconfig import CopySource

    destination = values["destinationBucket"] or values["bucket"]
    copied = handler.client.copy_object(destination, values["destinationKey"],
                                        CopySource(values["bucket"], values["fileKey"]))
    return {"bucket": values["bucket"], "fileKey": values["fileKey"], "destinationBucket": destination,
            "destinationKey": values["destinationKey"], "etag": (copied.etag or "").strip('"')}


def _bucket_usage(handler: MinioHandler, values: dict[str, Any]) -> dict[str, Any]:
    objects = size = 0
    for entry in handler.client.list_objects(values["bucket"], prefix=values["prefix"] or None, recursive=True):
        objects += 1
        size += entry.size or 0
    return {"bucket": values["bucket"], "prefix": values["prefix"], "objects": objects, "bytes": size}


def _op(name: str, args: type[OperationArgs], risk: Any, description: str, run: Runner | None, tokens: int,
        **more: Any) -> MinioOperation:
    """Self-hosted: every call costs USD 0 (a real zero); `tokens` is the spec's figure per call, or, with
    `tokens_of`, what is listed when nothing was (and `tokens_of` counts each call). A form picks the bucket
    from list-buckets."""
    pickers = {"bucket": Picker("list-buckets", "buckets", value="name", label="name")} if (
        "bucket" in args.model_fields) else {}
    return MinioOperation(name, args, risk, description, tokens=tokens, cost_usd=0.0, run=run, pickers=pickers,
                          **more)


_OBJECT = Target("object", "fileKey")
MINIO_OPERATIONS: tuple[MinioOperation, ...] = (
    _op("upload", UploadArgs, "write", "Store a file given in base64 (type and size checked first)", _upload, 1,
        group="objects", tokens_of=lambda data: math.ceil(data["size"] / 1024)),
    _op("list", ListArgs, "read", "Objects and folders under a prefix, a page at a time", _list, 10,
        group="objects", tokens_of=lambda data: 10 * data["count"]),
    _op("getUrl", GetUrlArgs, "read", "A presigned download URL for an object", _get_url, 5, group="objects",
        aliases=("get-url",), target=_OBJECT),
    _op("delete", ObjectArgs, "destructive", "Delete an object", _delete, 5, group="objects", target=_OBJECT),
    _op("stat", ObjectArgs, "read", "An object's size, type, checksum and metadata", _stat, 10, group="objects",
        target=_OBJECT),
    _op("health", NoArgs, "read", "Is the server up, and does it take our keys?", None, 5, group="buckets",
        aliases=("test",)),
    _op("list-buckets", NoArgs, "read", "Every bucket", _list_buckets, 5, group="buckets",
        tokens_of=lambda data: 5 * data["count"]),
    _op("copy", CopyArgs, "write", "Copy an object (within or across buckets)", _copy, 5, group="objects",
        target=_OBJECT),
    _op("bucket-usage", UsageArgs, "read", "How many objects and bytes under a prefix", _bucket_usage, 10,
        group="buckets"),
)


# -- errors ------------------------------------------------------------------------------------------

S3_ERRORS: Mapping[str, type[GatewayError]] = {
    **dict.fromkeys(("NoSuchBucket", "NoSuchKey", "NoSuchUpload"), ResourceNotFound),
    **dict.fromkeys(("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "RequestTimeTooSkewed"),
                    ServiceUnavailable),
    **dict.fromkeys(("InvalidBucketName", "InvalidArgument", "EntityTooLarge", "InvalidObjectName", "KeyTooLongError",
                     "BucketAlreadyOwnedByYou"), ValidationFailed),
    **dict.fromkeys(("SlowDown", "ServiceUnavailable", "RequestLimitExceeded"), RateLimitExceeded),
}


def _rate_limited(message: str) -> RateLimitExceeded:
    return RateLimitExceeded(f"MinIO: {message}", {"limit": None, "windowMs": None, "identifier": "minio",
                                                   "retryAfterMs": 1000})


def s3_error(exc: BaseException, values: Mapping[str, Any]) -> GatewayError | None:
    """The gateway's error for what the client raised; None for a bug of ours."""
    import urllib3
    from minio.error import InvalidResponseError, S3Error, ServerError

    about = {"bucket": values.get("bucket"), "fileKey": values.get("fileKey")}
    if isinstance(exc, S3Error):
        fallback = ServiceUnavailable if exc.response.status >= 500 else ValidationFailed
        error_class = S3_ERRORS.get(exc.code or "", fallback)
        if error_class is ResourceNotFound:
            kind, resource = ("bucket", about["bucket"]) if exc.code == "NoSuchBucket" else (
                "object", f"{about['bucket']}/{about['fileKey']}")
            return ResourceNotFound(f"MinIO: no {kind} {resource}", {"kind": kind, "id": resource, "code": exc.code})
        if error_class is RateLimitExceeded:
            return _rate_limited(f"{exc.code}: slow down")
        if error_class is ServiceUnavailable and exc.code in S3_ERRORS:
            return ServiceUnavailable(f"MinIO refused our keys ({exc.code}): check MINIO_ACCESS_KEY and "
                                      "MINIO_SECRET_KEY (and the clock)", {"service": "minio", "code": exc.code})
        if error_class is ServiceUnavailable:
            return ServiceUnavailable(f"MinIO failed ({exc.code})", {"service": "minio", "code": exc.code,
                                                                     "upstreamStatus": exc.response.status})
        return ValidationFailed(f"MinIO rejected the request ({exc.code}): {exc.message}", {**about, "code": exc.code})
    status = exc.status_code if isinstance(exc, ServerError) else exc._code if isinstance(
        exc, InvalidResponseError) else None
    if status is not None:
        if status == 503:
            return _rate_limited("the server is busy (503)")
        if status >= 500:
            return ServiceUnavailable(f"MinIO failed ({status})", {"service": "minio", "upstreamStatus": status})
        return ValidationFailed(f"MinIO answered {status}", {**about, "upstreamStatus": status})
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    if isinstance(reason, urllib3.exceptions.TimeoutError | TimeoutError):
        return UpstreamTimeout("MinIO did not answer in time (HTTP_TIMEOUT_MS)", {"service": "minio"})
    if isinstance(reason, urllib3.exceptions.HTTPError | OSError):
        return ServiceUnavailable(f"MinIO cannot be reached ({type(reason).__name__}): check MINIO_ENDPOINT",
                                  {"service": "minio"})
    if isinstance(exc, ValueError):  # the client's own checks: a bucket name S3 would refuse
        return ValidationFailed(f"MinIO: {exc}", about)
    return None


# -- the handler -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadLimits:
    allowed_types: tuple[str, ...]
    max_file_bytes: int
    max_request_bytes: int  # the gateway's own body limit ([server] max_body_bytes): base64 takes 4 for 3


def allowed_types(setting: str) -> tuple[str, ...]:
    return tuple(kind.strip().lower() for kind in setting.split(",") if kind.strip())


class MinioHandler(ServiceHandler):
    service = "minio"
    operations = OperationTable(MINIO_OPERATIONS, groups=("objects", "buckets"))

    def __init__(self, endpoint: str, access_key: str, secret_key: str, *, secure: bool = False,
                 region: str = "us-east-1", default_bucket: str | None = None, auto_create_buckets: bool = False,
                 limits: UploadLimits | None = None, presigned_seconds: int = 300,
                 timeout_seconds: float = 30.0, clock: Clock = system_clock) -> None:
        self.endpoint, self.secure = endpoint, secure
        self._clock = clock
        self._credentials = (access_key, secret_key, region)
        self._default_bucket = default_bucket
        self._auto_create = auto_create_buckets
        self.limits = limits or UploadLimits(allowed_types("video/*,image/*,application/pdf"), 500 << 20, 1 << 20)
        self._presigned_seconds = presigned_seconds
        self._timeout = timeout_seconds
        self._client: Minio | None = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        given = (settings.setting("MINIO_ENDPOINT") or "").strip().rstrip("/")
        parsed = urlsplit(given if "://" in given else f"//{given}")
        secure = parsed.scheme == "https" if parsed.scheme else settings.minio_use_ssl
        endpoint = parsed.netloc if parsed.port else f"{parsed.hostname}:{settings.minio_port}"
        return cls(endpoint, settings.setting("MINIO_ACCESS_KEY") or "", settings.setting("MINIO_SECRET_KEY") or "",
                   secure=secure, region=settings.minio_region, default_bucket=settings.minio_default_bucket,
                   auto_create_buckets=settings.minio_auto_create_buckets,
                   limits=UploadLimits(allowed_types(settings.allowed_file_types),
                                       math.floor(settings.max_file_size_mb * (1 << 20)),
                                       settings.server.max_body_bytes),
                   presigned_seconds=settings.presigned_url_expiry_seconds,
                   timeout_seconds=settings.http_timeout_ms / 1000, clock=clock)

    @property
    def client(self) -> Minio:
        """MinIO's client, built on first use (the library loads then, not at start-up)."""
        if self._client is None:
            import urllib3
            from minio import Minio

            access_key, secret_key, region = self._credentials
            http = urllib3.PoolManager(maxsize=10, retries=False,
                                       timeout=urllib3.Timeout(connect=min(self._timeout, 10.0), read=self._timeout))
            self._client = Minio(self.endpoint, access_key, secret_key, secure=self.secure, region=region,
                                 http_client=http)
        return self._client

    @property
    def base_url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    async def aclose(self) -> None:
        if self._client is not None:
            self._client._http.clear()

    # -- executing ----------------------------------------------------------------------------------

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        declared = cast(MinioOperation, operation)  # this handler's table holds only MinioOperations
        values = args.model_dump()
        if declared.run is None:
            return await self._health_result()
        if "bucket" in values:
            values["bucket"] = values["bucket"] or self._default_bucket
            if not values["bucket"]:
                raise InvalidParams("Invalid arguments: bucket: required (no MINIO_DEFAULT_BUCKET is set)",
                                    {"errors": [{"field": "bucket", "message": "required", "type": "missing"}]})
        run = declared.run
        try:
            return await asyncio.to_thread(run, self, values)
        except GatewayError:
            raise
        except Exception as exc:
            error = s3_error(exc, values)
            if error is None:
                raise
            raise error from None

    def checked_upload(self, file_base64: str, content_type: str) -> bytes:
        """The file, once its type and its size (read from the base64's length) pass, decoded strictly."""
        limits = self.limits
        kind = content_type.split(";", 1)[0].strip().lower()
        if not any(kind == allowed or (allowed.endswith("/*") and kind.startswith(allowed[:-1]))
                   for allowed in limits.allowed_types):
            raise ValidationFailed(f"MinIO: files of type {kind} are not accepted (ALLOWED_FILE_TYPES)",
                                   {"contentType": kind, "allowedTypes": list(limits.allowed_types)})
        encoded = "".join(file_base64.split())
        size = len(encoded) * 3 // 4 - (len(encoded) - len(encoded.rstrip("=")))
        if size > limits.max_file_bytes:
            # A larger file never gets here: the gateway refuses its request first (413, [server] max_body_bytes).
            raise ValidationFailed(
                f"MinIO: the file is {size} bytes, more than {limits.max_file_bytes} (MAX_FILE_SIZE_MB)",
                {"fileSize": size, "maxSize": limits.max_file_bytes, "limit": "MAX_FILE_SIZE_MB",
                 "maxRequestFileSize": limits.max_request_bytes * 3 // 4})
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParams("Invalid arguments: fileBuffer: not valid base64",
                                {"errors": [{"field": "fileBuffer", "message": "not valid base64",
                                             "type": "base64"}]}) from None

    def ensure_bucket(self, bucket: str) -> None:
        if self.client.bucket_exists(bucket):
            return
        if not self._auto_create:
            raise ResourceNotFound(f"MinIO: no bucket {bucket} (MINIO_AUTO_CREATE_BUCKETS is off)",
                                   {"kind": "bucket", "id": bucket})
        self.client.make_bucket(bucket, location=self._credentials[2])

    def now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self._clock(), datetime.UTC)

    def presigned(self, bucket: str, key: str, seconds: int | None) -> dict[str, Any]:
        expires_in = seconds or self._presigned_seconds
        signed_at = self.now()  # the URL's expiry and the one we state are reckoned from the same moment
        url = self.client.presigned_get_object(bucket, key, expires=datetime.timedelta(seconds=expires_in),
                                               request_date=signed_at)
        expires_at = signed_at + datetime.timedelta(seconds=expires_in)
        return {"url": url, "expiresIn": expires_in, "expiresAt": _iso(expires_at)}

    # -- health -------------------------------------------------------------------------------------

    def _probe(self, path: str) -> int | None:
        """The status of an unauthenticated GET (MinIO's health routes); None if nothing answered."""
        import urllib3

        try:
            return urllib3.request("GET", self.base_url + path, retries=False, timeout=min(self._timeout, 5.0)).status
        except urllib3.exceptions.HTTPError:
            return None

    def _check(self) -> tuple[HealthReport, int | None]:
        started = time.perf_counter()
        live = self._probe("/minio/health/live")
        if live is None or live == 503:
            return HealthReport("down", None, f"{self.base_url} does not answer: check MINIO_ENDPOINT"), None
        try:
            buckets = len(self.client.list_buckets())
        except Exception as exc:
            error = s3_error(exc, {})
            latency = round((time.perf_counter() - started) * 1000, 3)
            if isinstance(error, ServiceUnavailable) and "keys" in error.message:
                return HealthReport("degraded", latency, error.message), None
            return HealthReport("down", latency, error.message if error else type(exc).__name__), None
        latency = round((time.perf_counter() - started) * 1000, 3)
        # MinIO answers 503 here without quorum; a server that is not MinIO has no such route (other statuses).
        if self._probe("/minio/health/cluster") == 503:
            return HealthReport("degraded", latency, "no quorum (/minio/health/cluster answered 503)"), buckets
        return HealthReport("healthy", latency, f"{buckets} bucket(s)"), buckets

    async def health(self) -> HealthReport:
        report, _ = await asyncio.to_thread(self._check)
        return report

    async def _health_result(self) -> dict[str, Any]:
        report, buckets = await asyncio.to_thread(self._check)
        data = {"operation": "health", "healthy": report.status == "healthy", "status": report.status,
                "service": "minio", "latency": report.latency_ms, "bucketsCount": buckets, "message": report.message}
        if report.status == "down":
            raise ServiceUnavailable(f"MinIO is down: {report.message}", {**data, "service": "minio"})
        return data
