"""Coolify v4: the eighteen operations agents call and the on-call extras, against Coolify's own API
(shared/spec/coolify-operations.md, shared/coolify/openapi.json).

Every operation is declared once below: its argument model and risk, and the Coolify route it calls
(method, path, which arguments go in the query and which in the body). The conformance test walks
these declarations against Coolify's OpenAPI file."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self, cast

from pydantic import Field

from gateway_core.clock import Clock
from gateway_core.config import Settings
from gateway_core.errors import (
    RateLimitExceeded,
    ResourceNotFound,
    ServiceUnavailable,
    UpstreamTimeout,
    ValidationFailed,
)
from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.rest import fill_path, json_answer, json_of, ms_since
from gateway_core.health import HealthReport
from gateway_core.operations import (
    NoArgs,
    Operation,
    OperationArgs,
    OperationTable,
    Picker,
    ResultShaper,
    Risk,
    Target,
)
from gateway_core.redaction import MASK
from gateway_core.upstream import UpstreamClient, UpstreamConnectionError, UpstreamResponse, UpstreamTimeoutError

API_PREFIX = "/api/v1"
TERMINAL_DEPLOYMENT_STATES = ("finished", "failed", "cancelled-by-user")
TOKEN_REFUSED = "Coolify refused the token (needs read/write/deploy abilities): check COOLIFY_API_TOKEN"

# -- argument models ---------------------------------------------------------------------------------

UUID_OR_NAME = Field(min_length=1, description="the resource's uuid, or its name")


class TagArgs(OperationArgs):
    tag: str | None = Field(None, description="only resources with this tag")


class UuidArgs(OperationArgs):
    uuid: str = UUID_OR_NAME


WAIT = Field(0, ge=0, le=3600, description="seconds to follow the deployment until it ends")


class WaitArgs(UuidArgs):
    wait: float = WAIT

    def extra_seconds(self) -> float:
        return self.wait


class DeployArgs(UuidArgs):
    force: bool = Field(False, description="rebuild without cache")
    wait: float = WAIT  # after force: existing clients send [uuid, force]

    def extra_seconds(self) -> float:
        return self.wait


class StartApplicationArgs(UuidArgs):
    force: bool | None = Field(None, description="rebuild without cache")
    instant_deploy: bool | None = Field(None, description="skip the queue")


class StopArgs(UuidArgs):
    docker_cleanup: bool | None = Field(None, description="prune networks and volumes after stopping")


class LogsArgs(UuidArgs):
    lines: int = Field(100, ge=1, le=10_000)


class ServiceLogsArgs(UuidArgs):
    sub_service_name: str = Field(min_length=1, description="the container of the service, e.g. 'postgresql'")
    lines: int = Field(100, ge=1, le=10_000)


class DeploymentPageArgs(UuidArgs):
    skip: int = Field(0, ge=0)
    take: int = Field(10, ge=1, le=100)


class EnvsArgs(UuidArgs):
    reveal: bool = Field(False, description="show secret values (only where the token may read them)")


class RollbackArgs(UuidArgs):
    commit: str | None = Field(None, description="the image tag to roll back to; omit to list them")


class DeploymentArgs(OperationArgs):
    uuid: str = Field(min_length=1, description="the deployment's uuid")


class CreateDatabaseArgs(OperationArgs):
    type: Literal["postgresql", "mysql", "mariadb", "mongodb", "redis", "keydb", "dragonfly", "clickhouse"] = (
        "postgresql"
    )
    server_uuid: str = Field(min_length=1)
    project_uuid: str = Field(min_length=1)
    environment_name: str = Field(min_length=1)
    environment_uuid: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    image: str | None = None
    instant_deploy: bool | None = None
    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="fields of that database type, e.g. postgres_user, limits_memory")


class CreateServerArgs(OperationArgs):
    name: str = Field(min_length=1)
    ip: str = Field(min_length=1)
    private_key_uuid: str = Field(min_length=1, description="a key from list-private-keys; never a raw key")
    port: int = Field(22, ge=1, le=65535)
    user: str = "root"
    description: str | None = None
    is_build_server: bool | None = None
    instant_validate: bool | None = None
    proxy_type: Literal["traefik", "caddy", "none"] | None = None


class CreateProjectArgs(OperationArgs):
    name: str = Field(min_length=1)
    description: str | None = None


# -- the declarations --------------------------------------------------------------------------------

ResourceKind = Literal["applications", "databases", "servers", "projects", "services"]
SINGULAR = {"applications": "application", "databases": "database", "servers": "server", "projects": "project",
            "services": "service"}


@dataclass(frozen=True, slots=True)
class CoolifyRoute:
    """A Coolify call. Path placeholders are filled from the arguments of that name; `query` and `body` name
    the arguments sent there (unset ones are left out), and `body_from` an argument whose object's fields
    join the body. A route with `when` is taken only when that argument is set; `fallback_method` is how
    Coolify before 4.2 took this route (tried once after 405 or 404, then kept for this instance)."""

    method: Literal["GET", "POST"]
    path: str
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    body_from: str | None = None
    when: str | None = None
    fallback_method: Literal["GET"] | None = None


@dataclass(frozen=True, slots=True)
class CoolifyOperation(Operation):
    routes: tuple[CoolifyRoute, ...] = ()  # none: the handler's own health check answers
    result_key: str | None = None  # where the answer goes in `data`; None: its fields are merged in


def _op(name: str, args: type[OperationArgs], risk: Risk, description: str, *routes: CoolifyRoute,
        target: ResourceKind | None = None, result_key: str | None = None, group: str | None = None,
        pickers: Mapping[str, Picker] | None = None, shape: ResultShaper | None = None) -> CoolifyOperation:
    """An operation on a `target` kind is listed under it, resolves names to uuids, and picks its `uuid`
    from that kind's list operation."""
    return CoolifyOperation(
        name, args, risk, description, routes=routes, result_key=result_key, shape=shape,
        group=group or target or "instance",
        target=Target(target) if target else None,
        pickers={**({"uuid": Picker(f"list-{target}", target)} if target else {}), **(pickers or {})})


def GET(path: str, query: tuple[str, ...] = ()) -> CoolifyRoute:
    return CoolifyRoute("GET", path, query)


def POST(path: str, query: tuple[str, ...] = (), body: tuple[str, ...] = (), **more: Any) -> CoolifyRoute:
    return CoolifyRoute("POST", path, query, body, **more)


def _listed(key: str, items: Any) -> dict[str, Any]:
    return {"count": len(items), key: items} if isinstance(items, list) else {key: items}


def _object(answer: Any) -> dict[str, Any]:
    return answer if isinstance(answer, dict) else {"response": answer}


def _started_deployment(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    deployments = _object(answer).get("deployments") or [{}]
    return {**_object(answer), "deployment_uuid": deployments[0].get("deployment_uuid")}


def _masked_envs(arguments: Mapping[str, Any], envs: Any) -> dict[str, Any]:
    if not arguments["reveal"] and isinstance(envs, list):
        envs = [_masked(env) for env in envs]
    return _listed("envs", envs)


def _key_summaries(arguments: Mapping[str, Any], keys: Any) -> dict[str, Any]:
    fields = ("uuid", "name", "description", "fingerprint", "is_git_related")  # never the key itself
    return _listed("private_keys", [{field: key.get(field) for field in fields} for key in keys
                                    if isinstance(key, dict)])


def _deployment_page(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    page = _object(answer)
    return {"count": page.get("count", 0), "deployments": page.get("deployments", [])}


_DATABASE_BODY = ("server_uuid", "project_uuid", "environment_name", "environment_uuid", "name", "description",
                  "image", "instant_deploy")
_SERVER = Picker("list-servers", "servers")
_PROJECT = Picker("list-projects", "projects")

COOLIFY_OPERATIONS: tuple[CoolifyOperation, ...] = (
    # The eighteen agents already call.
    _op("list-applications", TagArgs, "read", "List applications", GET("/applications", ("tag",)),
        result_key="applications", group="applications"),
    _op("get-application", UuidArgs, "read", "One application", GET("/applications/{uuid}"),
        target="applications", result_key="application"),
    _op("deploy-application", DeployArgs, "write", "Deploy an application (optionally wait for the result)",
        POST("/deploy", ("uuid", "force")), target="applications", shape=_started_deployment),
    _op("start-application", StartApplicationArgs, "write", "Start an application",
        POST("/applications/{uuid}/start", ("force", "instant_deploy")), target="applications"),
    _op("stop-application", StopArgs, "destructive", "Stop an application",
        POST("/applications/{uuid}/stop", ("docker_cleanup",)), target="applications"),
    _op("restart-application", WaitArgs, "write", "Restart an application (optionally wait for the result)",
        POST("/applications/{uuid}/restart"), target="applications"),
    _op("list-databases", NoArgs, "read", "List databases", GET("/databases"), result_key="databases",
        group="databases"),
    _op("create-database", CreateDatabaseArgs, "write", "Create a database of a type",
        POST("/databases/{type}", body=_DATABASE_BODY, body_from="settings"), group="databases",
        pickers={"server_uuid": _SERVER, "project_uuid": _PROJECT},
        shape=lambda arguments, answer: {"type": arguments["type"], **_object(answer)}),
    _op("list-servers", NoArgs, "read", "List servers", GET("/servers"), result_key="servers", group="servers"),
    _op("create-server", CreateServerArgs, "write", "Add a server reached over SSH with a stored private key",
        POST("/servers", body=("name", "description", "ip", "port", "user", "private_key_uuid", "is_build_server",
                               "instant_validate", "proxy_type")), group="servers",
        pickers={"private_key_uuid": Picker("list-private-keys", "private_keys")}),
    _op("validate-server", UuidArgs, "write", "Start validating a server (the result arrives later)",
        POST("/servers/{uuid}/validate", fallback_method="GET"), target="servers"),
    _op("list-projects", NoArgs, "read", "List projects", GET("/projects"), result_key="projects", group="projects"),
    _op("create-project", CreateProjectArgs, "write", "Create a project",
        POST("/projects", body=("name", "description")), group="projects"),
    _op("list-services", NoArgs, "read", "List services", GET("/services"), result_key="services", group="services"),
    _op("start-service", UuidArgs, "write", "Start a service", POST("/services/{uuid}/start"), target="services"),
    _op("stop-service", StopArgs, "destructive", "Stop a service",
        POST("/services/{uuid}/stop", ("docker_cleanup",)), target="services"),
    _op("get-version", NoArgs, "read", "Coolify's version", GET("/version"),
        shape=lambda arguments, answer: {"version": str(answer).strip().strip('"')}),
    _op("health", NoArgs, "read", "Is Coolify up, and does it accept our token?"),
    # What an operator reaches for next.
    _op("get-application-logs", LogsArgs, "read", "An application's recent log lines",
        GET("/applications/{uuid}/logs", ("lines",)), target="applications"),
    _op("list-deployments", NoArgs, "read", "Deployments queued or in progress", GET("/deployments"),
        result_key="deployments", group="deployments"),
    _op("list-application-deployments", DeploymentPageArgs, "read", "An application's deployments, newest first",
        GET("/deployments/applications/{uuid}", ("skip", "take")), target="applications", shape=_deployment_page),
    _op("get-deployment", DeploymentArgs, "read", "One deployment, with its status and log",
        GET("/deployments/{uuid}"), result_key="deployment", group="deployments"),
    _op("cancel-deployment", DeploymentArgs, "write", "Cancel a deployment that has not finished",
        POST("/deployments/{uuid}/cancel"), group="deployments"),
    _op("list-application-envs", EnvsArgs, "read", "An application's environment variables (values masked)",
        GET("/applications/{uuid}/envs"), target="applications", shape=_masked_envs),
    _op("get-database", UuidArgs, "read", "One database", GET("/databases/{uuid}"), target="databases",
        result_key="database"),
    _op("start-database", UuidArgs, "write", "Start a database", POST("/databases/{uuid}/start"),
        target="databases"),
    _op("stop-database", StopArgs, "destructive", "Stop a database",
        POST("/databases/{uuid}/stop", ("docker_cleanup",)), target="databases"),
    _op("restart-database", UuidArgs, "write", "Restart a database", POST("/databases/{uuid}/restart"),
        target="databases"),
    _op("get-database-logs", LogsArgs, "read", "A database's recent log lines",
        GET("/databases/{uuid}/logs", ("lines",)), target="databases"),
    _op("get-service", UuidArgs, "read", "One service", GET("/services/{uuid}"), target="services",
        result_key="service"),
    _op("restart-service", UuidArgs, "write", "Restart a service", POST("/services/{uuid}/restart"),
        target="services"),
    _op("get-service-logs", ServiceLogsArgs, "read", "Recent log lines of one container of a service",
        GET("/services/{uuid}/logs", ("sub_service_name", "lines")), target="services"),
    _op("get-server", UuidArgs, "read", "One server", GET("/servers/{uuid}"), target="servers", result_key="server"),
    _op("get-server-resources", UuidArgs, "read", "What runs on a server", GET("/servers/{uuid}/resources"),
        target="servers", result_key="resources"),
    _op("get-server-domains", UuidArgs, "read", "The domains a server serves", GET("/servers/{uuid}/domains"),
        target="servers", result_key="domains"),
    _op("list-resources", NoArgs, "read", "Every resource", GET("/resources"), result_key="resources"),
    _op("list-private-keys", NoArgs, "read", "Stored SSH keys: names, uuids and fingerprints only",
        GET("/security/keys"), shape=_key_summaries),
    _op("get-project", UuidArgs, "read", "One project", GET("/projects/{uuid}"), target="projects",
        result_key="project"),
    _op("list-environments", UuidArgs, "read", "A project's environments",
        GET("/projects/{uuid}/environments"), target="projects", result_key="environments"),
    _op("rollback-application", RollbackArgs, "write",
        "Roll an application back to an earlier image (without commit: list the images)",
        POST("/applications/{uuid}/rollback", body=("commit",), when="commit"),
        GET("/applications/{uuid}/rollback-images"), target="applications",
        shape=lambda arguments, answer: _object(answer) if arguments.get("commit") else _listed("images", answer)),
)


def api_root(url: str) -> str:
    """The instance root, whether COOLIFY_API_URL was given with /api/v1, a trailing slash, or neither."""
    root = url.strip().rstrip("/")
    if root.endswith(API_PREFIX):
        root = root[: -len(API_PREFIX)]
    return root.rstrip("/")


def _query_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _snake(name: str) -> str:
    return name.replace("-", "_")


class CoolifyHandler(ServiceHandler):
    service = "coolify"
    operations = OperationTable(COOLIFY_OPERATIONS, groups=("applications", "deployments", "databases",
                                                            "services", "servers", "projects", "instance"))

    def __init__(self, api_url: str, token: str, timeout_seconds: float = 30.0, poll_seconds: float = 2.0) -> None:
        root = api_root(api_url)
        self._api = UpstreamClient(root + API_PREFIX, {"Authorization": f"Bearer {token}",
                                                       "Accept": "application/json"}, timeout_seconds)
        self._public = UpstreamClient(root, {"Accept": "application/json"}, timeout_seconds)
        self._poll_seconds = poll_seconds
        self._methods_learnt: dict[str, str] = {}  # route path → the method this Coolify takes it with

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        return cls(settings.setting("COOLIFY_API_URL") or "", settings.setting("COOLIFY_API_TOKEN") or "",
                   settings.coolify_timeout_seconds, settings.coolify_poll_seconds)

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._public.aclose()

    # -- executing ----------------------------------------------------------------------------------

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        declared = cast(CoolifyOperation, operation)  # this handler's table holds only CoolifyOperations
        values = args.model_dump()
        if not declared.routes:
            return await self._health_result()
        try:
            return await self._run(declared, values)
        except ResourceNotFound:
            if declared.target is None:
                raise
            # Perhaps a name, not a uuid: resolve it through the list call and try once more.
            argument = declared.target.argument
            values[argument] = await self._resolve(cast(ResourceKind, declared.target.kind), values[argument])
            return await self._run(declared, values)

    async def _run(self, declared: CoolifyOperation, values: dict[str, Any]) -> dict[str, Any]:
        route = next((r for r in declared.routes if r.when is not None and values.get(r.when) is not None),
                     None) or next(r for r in declared.routes if r.when is None)
        answer = json_answer(await self._call(route, values))
        result: dict[str, Any] = {"operation": _snake(declared.name)}
        if declared.target is not None and declared.result_key is None:
            result[declared.target.argument] = values[declared.target.argument]
        if declared.shape is not None:
            result.update(declared.shape(values, answer))
        elif declared.result_key is not None:
            result.update(_listed(declared.result_key, answer))
        else:
            result.update(_object(answer))
        wait = float(values.get("wait") or 0)
        if wait and result.get("deployment_uuid"):
            result["deployment"] = await self._follow(result["deployment_uuid"], wait)
        return result

    async def _call(self, route: CoolifyRoute, values: Mapping[str, Any]) -> UpstreamResponse:
        path = fill_path(route.path, values)
        query = {key: _query_value(values[key]) for key in route.query if values.get(key) is not None}
        body: dict[str, Any] | None = None
        if route.body or route.body_from:
            body = {**(values[route.body_from] if route.body_from else {}),
                    **{key: values[key] for key in route.body if values.get(key) is not None}}
        method = self._methods_learnt.get(route.path, route.method)
        try:
            return await self._request(method, path, query, body)
        except (RouteNotAccepted, ResourceNotFound):
            if route.fallback_method is None or method == route.fallback_method:
                raise
        # Coolify before 4.2 took this route with another method (a POST met 405 or the catch-all 404).
        response = await self._request(route.fallback_method, path, query, body)
        self._methods_learnt[route.path] = route.fallback_method
        return response

    async def _request(self, method: str, path: str, query: Mapping[str, str], body: Any) -> UpstreamResponse:
        try:
            response = await self._api.request(method, path, params=query or None, json_body=body)
        except UpstreamTimeoutError as exc:
            raise UpstreamTimeout(f"Coolify: {exc}", {"service": "coolify"}) from None
        except UpstreamConnectionError as exc:
            raise ServiceUnavailable(f"Coolify unreachable: {exc}: check COOLIFY_API_URL",
                                     {"service": "coolify"}) from None
        _raise_for_status(response, path)
        return response

    async def _resolve(self, kind: ResourceKind, name: str) -> str:
        listing = json_of(await self._api_get(f"/{kind}"), "Coolify", "COOLIFY_API_URL")
        matches = [item for item in listing if isinstance(item, dict) and item.get("name") == name]
        singular = SINGULAR[kind]
        if len(matches) == 1:
            return str(matches[0]["uuid"])
        if not matches:
            raise ResourceNotFound(f"Coolify has no {singular} with uuid or name {name!r}",
                                   {"kind": singular, "uuid": name})
        candidates = [item["uuid"] for item in matches]
        raise ValidationFailed(f"{len(matches)} {kind} are named {name!r}: give one of their uuids",
                               {"kind": singular, "name": name, "candidates": candidates})

    async def _api_get(self, path: str) -> UpstreamResponse:
        return await self._request("GET", path, {}, None)

    async def _follow(self, deployment_uuid: str, wait: float) -> dict[str, Any]:
        """Polls the deployment until it ends or `wait` seconds pass, backing off; a failure is an error
        carrying the last lines of the deployment's log."""
        deadline = time.monotonic() + wait
        interval = self._poll_seconds
        while True:
            deployment = _object(json_answer(await self._api_get(f"/deployments/{deployment_uuid}")))
            status = str(deployment.get("status", ""))
            summary = {"deployment_uuid": deployment_uuid, "status": status}
            if status == "finished":
                return summary
            if status in TERMINAL_DEPLOYMENT_STATES:
                raise ValidationFailed(
                    f"Coolify deployment {deployment_uuid} ended {status}",
                    {**summary, "log_tail": _log_tail(deployment.get("logs"))},
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {**summary, "message": f"still {status or 'running'} after {wait:g} s"}
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 10.0)

    # -- health -------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        started = time.perf_counter()
        try:
            alive = await self._public.request("GET", "/api/health")
        except (UpstreamConnectionError, UpstreamTimeoutError) as exc:
            return HealthReport("down", None, f"{exc}: check COOLIFY_API_URL")
        if alive.status >= 500:
            return HealthReport("down", ms_since(started), f"/api/health answered {alive.status}")
        try:
            version = await self._api.request("GET", "/version")
        except (UpstreamConnectionError, UpstreamTimeoutError) as exc:
            return HealthReport("down", ms_since(started), f"{exc}")
        latency = ms_since(started)
        if version.status in (400, 401, 403):
            return HealthReport("degraded", latency, TOKEN_REFUSED)
        if version.status != 200:
            return HealthReport("degraded", latency, f"/api/v1/version answered {version.status}")
        return HealthReport("healthy", latency, f"Coolify {version.text.strip()}")

    async def _health_result(self) -> dict[str, Any]:
        report = await self.health()
        data = {"operation": "health", "status": report.status, "latency_ms": report.latency_ms,
                "message": report.message}
        if report.status == "down":
            raise ServiceUnavailable(f"Coolify is down: {report.message}", {"service": "coolify", **data})
        return data


class RouteNotAccepted(ServiceUnavailable):
    """Coolify answered 405: this version does not take that method on that route."""


def _masked(env: Any) -> Any:
    if not isinstance(env, dict):
        return env
    return {key: (MASK if key in ("value", "real_value") and value not in (None, "") else value)
            for key, value in env.items()}


def _log_tail(logs: Any, lines: int = 20) -> list[str]:
    """The last lines of a deployment's log, which Coolify keeps as a JSON list of entries."""
    if not logs:
        return []
    if isinstance(logs, str):
        try:
            logs = json.loads(logs)
        except json.JSONDecodeError:
            return str(logs).splitlines()[-lines:]
    if isinstance(logs, list):
        output = [str(entry.get("output", "")) if isinstance(entry, dict) else str(entry) for entry in logs]
        return [line for chunk in output for line in chunk.splitlines()][-lines:]
    return [str(logs)]


def _message(response: UpstreamResponse) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    return str(payload.get("message", "")) if isinstance(payload, dict) else ""


def _raise_for_status(response: UpstreamResponse, path: str) -> None:
    """Coolify's errors as the gateway's, per the table in coolify-operations.md."""
    status = response.status
    if status < 400:
        return
    message = _message(response)
    if status == 405:
        raise RouteNotAccepted(f"Coolify does not accept this call on {path}: {message}",
                               {"service": "coolify", "upstreamStatus": status})
    if status in (401, 403) or (status == 400 and message == "Invalid token."):
        raise ServiceUnavailable(TOKEN_REFUSED, {"service": "coolify", "upstreamStatus": status})
    if status == 404:
        kind, _, uuid = path.strip("/").partition("/")
        singular = SINGULAR.get(kind, kind.rstrip("s"))
        resource_uuid = uuid.split("/")[0] or None
        raise ResourceNotFound(f"Coolify: {message or 'Resource not found.'} ({singular} {resource_uuid})",
                               {"kind": singular, "uuid": resource_uuid})
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        retry_ms = int(float(retry_after) * 1000) if retry_after.replace(".", "", 1).isdigit() else 60_000
        raise RateLimitExceeded(f"Coolify: {message or 'rate limit exceeded'}",
                                {"limit": None, "windowMs": None, "identifier": "coolify", "retryAfterMs": retry_ms})
    if status >= 500:
        raise ServiceUnavailable(f"Coolify failed ({status}): {message or 'server error'}",
                                 {"service": "coolify", "upstreamStatus": status})
    errors: Any = None
    try:
        payload = response.json()
        errors = payload.get("errors") if isinstance(payload, dict) else None
    except ValueError:
        pass
    raise ValidationFailed(f"Coolify rejected the request: {message or status}",
                           {"upstreamStatus": status, "errors": errors})
