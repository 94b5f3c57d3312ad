"""A Coolify-compatible server for the tests and the sandbox: the routes our operations use, in the shapes of
Coolify's own OpenAPI file, with state that behaves. Every request is checked against that file (route,
method, required parameters, body fields); a request the real Coolify would not accept is recorded in
`violations`, which the tests assert to be empty.

The file is package data (`sandbox/openapi/coolify.json`, Coolify v4.3.11's own, as in
`shared/coolify/openapi.json`), so the checks need nothing beside the checkout."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid as uuid_module
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

OPENAPI_FILE = resources.files("sandbox") / "openapi" / "coolify.json"
NOT_FOUND = {"message": "Resource not found."}


class OpenApiContract:
    """What Coolify's OpenAPI file says a request must look like."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        templates = sorted(spec["paths"], key=lambda template: (template.count("{"), template))
        self.routes = [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"), template)
                       for template in templates]

    @classmethod
    def load(cls, source: Traversable = OPENAPI_FILE) -> OpenApiContract:
        return cls(json.loads(source.read_text()))

    def template_for(self, path: str) -> str | None:
        return next((template for pattern, template in self.routes if pattern.match(path)), None)

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.spec["paths"][template].get(method.lower())
        return found

    def problems(self, method: str, path: str, query: dict[str, str], body: Any) -> list[str]:
        template = self.template_for(path)
        if template is None:
            return [f"{method} {path}: no such route in Coolify's API"]
        operation = self.operation(method, template)
        if operation is None:
            return [f"{method} {path}: Coolify's {template} does not take {method}"]
        found = []
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and parameter.get("required") and parameter["name"] not in query:
                found.append(f"{method} {template}: required query parameter {parameter['name']} missing")
        request_body = operation.get("requestBody", {})
        schema = request_body.get("content", {}).get("application/json", {}).get("schema")
        if body is None and not request_body.get("required"):
            return found  # an optional body may be left out
        if schema is None:
            if body not in (None, b"", {}):
                found.append(f"{method} {template}: takes no body")
            return found
        if not isinstance(body, dict):
            return [*found, f"{method} {template}: the body must be a JSON object"]
        found += [f"{method} {template}: required body field {name} missing"
                  for name in schema.get("required", []) if name not in body]
        known = schema.get("properties", {})
        found += [f"{method} {template}: unknown body field {name}" for name in body if name not in known]
        return found


@dataclass
class ReceivedRequest:
    method: str
    path: str  # below /api/v1
    query: dict[str, str]
    body: Any
    authorization: str | None


@dataclass
class Deployment:
    uuid: str
    application_uuid: str
    created: float
    fate: str = "finished"
    cancelled: bool = False
    log_lines: list[str] = field(default_factory=lambda: ["Starting deployment.", "Build finished."])


Table = dict[str, dict[str, Any]]  # uuid → resource
Listing = dict[str, list[dict[str, Any]]]  # uuid → its items
Handler = Callable[[dict[str, str], dict[str, str], Any], Awaitable[tuple[int, Any]]]


class FakeCoolify:
    def __init__(self, token: str = "coolify-test-token", *, contract: OpenApiContract | None = None,
                 stage_seconds: float = 0.2, version: str = "4.3.11", delay_seconds: float = 0.0,
                 failure_rate: float = 0.0, read_only_token: str | None = None, seed: int = 7,
                 validate_get_only: bool = False) -> None:
        self.token = token
        self.read_only_token = read_only_token
        self.contract = contract if contract is not None else OpenApiContract.load()
        self.stage_seconds = stage_seconds
        self.version = version
        self.delay_seconds = delay_seconds
        self.failure_rate = failure_rate
        self.validate_get_only = validate_get_only  # behave like Coolify before 4.2
        self.rate_limited_for: float = 0  # seconds of Retry-After to answer with, while > 0
        self.next_deployment_fails = False
        self.requests: deque[ReceivedRequest] = deque(maxlen=5000)  # the latest: a sandbox runs for hours
        self.violations: list[str] = []
        self._random = random.Random(seed)
        self._ids = 0
        self.projects: Table = {"prj1": {"id": 1, "uuid": "prj1", "name": "kids-ascension", "description": "main"}}
        self.environments: Listing = {"prj1": [{"id": 1, "uuid": "env1", "name": "production", "project_id": 1}]}
        self.servers: Table = {"srv1": {"id": 1, "uuid": "srv1", "name": "main-server", "description": None,
                                        "ip": "10.0.0.5", "user": "root", "port": 22, "proxy_type": "traefik",
                                        "settings": {"is_reachable": True, "is_usable": True}}}
        self.keys: Table = {"key1": {"id": 1, "uuid": "key1", "name": "deploy-key", "description": "CI",
                                     "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAfake\n-----END OPENSSH "
                                     "PRIVATE KEY-----", "public_key": "ssh-ed25519 AAAAfake",
                                     "fingerprint": "SHA256:fake", "is_git_related": False}}
        self.applications: Table = {
            uuid: {"id": n, "uuid": uuid, "name": name, "status": status, "fqdn": f"https://{name}.example.com",
                   "git_repository": f"acme/{name}", "git_branch": "main", "build_pack": "nixpacks",
                   "tags": tags, "server_uuid": "srv1"}
            for n, (uuid, name, status, tags) in enumerate([
                ("app1", "web", "running:healthy", ["frontend"]), ("app2", "api", "exited:unhealthy", []),
                ("app3", "worker", "running:healthy", []), ("app4", "worker", "running:healthy", [])], 1)
        }
        self.envs: Listing = {"app1": [{"uuid": "env-var-1", "key": "DATABASE_URL",
                                        "value": "postgres://app:hunter2@db:5432/app", "real_value":
                                        "postgres://app:hunter2@db:5432/app", "is_preview": False},
                                       {"uuid": "env-var-2", "key": "LOG_LEVEL", "value": "info", "real_value": "info",
                                        "is_preview": False}]}
        self.databases: Table = {"db1": {"id": 1, "uuid": "db1", "name": "main-db", "status": "running:healthy",
                                         "database_type": "standalone-postgresql", "internal_db_url":
                                         "postgres://postgres:secret@db1:5432/postgres"}}
        self.services: Table = {"svc1": {"id": 1, "uuid": "svc1", "name": "plausible", "status": "running:healthy",
                                         "service_type": "plausible"}}
        self.deployments: dict[str, Deployment] = {}
        self.rollback_images: Listing = {"app1": [{"tag": "abc123", "created_at": "2026-11-28T10:00:00Z"},
                                                  {"tag": "def456", "created_at": "2026-11-27T10:00:00Z"}]}
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._declare_routes()

    # -- plumbing -----------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._endpoint,
                                       methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])

    def _route(self, method: str, template: str) -> Callable[[Handler], Handler]:
        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$")

        def register(handler: Handler) -> Handler:
            self._routes.append((method, pattern, handler))
            return handler

        return register

    def _new_uuid(self) -> str:
        self._ids += 1
        return f"{uuid_module.UUID(int=self._random.getrandbits(128)).hex[:7]}{self._ids}"

    def requests_to(self, method: str, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    async def _endpoint(self, request: Request) -> Response:
        path = request.url.path
        if path == "/api/health":
            return PlainTextResponse("OK")
        if not path.startswith("/api/v1/"):
            return JSONResponse({"message": "Not found."}, 404)
        api_path = path[len("/api/v1"):]
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw
        query = dict(request.query_params)
        method = request.method
        self.requests.append(ReceivedRequest(method, api_path, query, body, request.headers.get("authorization")))
        if self.contract and not (method == "GET" and self.validate_get_only and api_path.endswith("/validate")):
            self.violations += self.contract.problems(method, api_path, query, body)
        if request.headers.get("accept") != "application/json":
            self.violations.append(f"{method} {api_path}: sent without Accept: application/json")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        given = request.headers.get("authorization", "")
        if given not in (f"Bearer {self.token}", f"Bearer {self.read_only_token}"):
            return JSONResponse({"message": "Unauthenticated."}, 401)
        if method != "GET" and given == f"Bearer {self.read_only_token}":
            return JSONResponse({"message": "You are not allowed to perform this action."}, 403)
        if self.failure_rate and self._random.random() < self.failure_rate:
            return JSONResponse({"message": "Server Error"}, 500)
        if self.rate_limited_for:
            return JSONResponse({"message": "Rate limit exceeded. Please try again later."}, 429,
                                headers={"Retry-After": str(int(self.rate_limited_for))})
        allowed_methods = []
        for route_method, pattern, handler in self._routes:
            match = pattern.match(api_path)
            if not match:
                continue
            if route_method != method:
                allowed_methods.append(route_method)
                continue
            status, payload = await handler(match.groupdict(), query, body)
            if isinstance(payload, str):
                return PlainTextResponse(payload, status)
            return JSONResponse(payload, status)
        if allowed_methods == ["POST"] and method == "GET":
            return JSONResponse({"message": "This endpoint has changed to a POST request."}, 405)
        return JSONResponse({"message": "Not found."}, 404)

    # -- behaviour ----------------------------------------------------------------------------------

    def deployment_status(self, deployment: Deployment) -> str:
        if deployment.cancelled:
            return "cancelled-by-user"
        elapsed = time.monotonic() - deployment.created
        if elapsed < self.stage_seconds:
            return "queued"
        if elapsed < 2 * self.stage_seconds:
            return "in_progress"
        return deployment.fate

    def _deployment_view(self, deployment: Deployment) -> dict[str, Any]:
        status = self.deployment_status(deployment)
        lines = deployment.log_lines + (["ERROR: build failed: exit code 1"] if status == "failed" else [])
        return {"deployment_uuid": deployment.uuid, "application_id": deployment.application_uuid,
                "application_name": self.applications[deployment.application_uuid]["name"], "status": status,
                "logs": json.dumps([{"output": line, "type": "stdout"} for line in lines]),
                "created_at": "2026-11-29T03:00:00Z"}

    def _queue_deployment(self, application_uuid: str) -> Deployment:
        deployment = Deployment(self._new_uuid(), application_uuid, time.monotonic())
        if self.next_deployment_fails:
            deployment.fate, self.next_deployment_fails = "failed", False
        self.deployments[deployment.uuid] = deployment
        return deployment

    @staticmethod
    def _invalid(errors: dict[str, list[str]]) -> tuple[int, Any]:
        return 422, {"message": "Validation failed.", "errors": errors}

    def _declare_routes(self) -> None:
        route = self._route

        def listing(store: dict[str, dict[str, Any]]) -> Handler:
            async def handler(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
                return 200, list(store.values())
            return handler

        def one(store: dict[str, dict[str, Any]]) -> Handler:
            async def handler(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
                found = store.get(params["uuid"])
                return (200, found) if found else (404, NOT_FOUND)
            return handler

        def set_status(store: dict[str, dict[str, Any]], status: str, message: str) -> Handler:
            async def handler(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
                found = store.get(params["uuid"])
                if not found:
                    return 404, NOT_FOUND
                found["status"] = status
                return 200, {"message": message}
            return handler

        def logs(store: dict[str, dict[str, Any]]) -> Handler:
            async def handler(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
                if params["uuid"] not in store:
                    return 404, NOT_FOUND
                lines = int(query.get("lines", 100))
                return 200, {"logs": "\n".join(f"log line {n}" for n in range(1, lines + 1))}
            return handler

        async def version(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, self.version

        async def list_applications(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            tag = query.get("tag")
            return 200, [a for a in self.applications.values() if tag is None or tag in a["tags"]]

        async def deploy(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            application = self.applications.get(query.get("uuid", ""))
            if application is None:
                return 404, NOT_FOUND
            deployment = self._queue_deployment(application["uuid"])
            return 200, {"deployments": [{"message": f"Application {application['name']} deployment queued.",
                                          "resource_uuid": application["uuid"],
                                          "deployment_uuid": deployment.uuid}]}

        def queue(status: str, message: str) -> Handler:
            async def handler(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
                application = self.applications.get(params["uuid"])
                if application is None:
                    return 404, NOT_FOUND
                application["status"] = status
                deployment = self._queue_deployment(application["uuid"])
                return 200, {"message": message, "deployment_uuid": deployment.uuid}
            return handler

        async def envs(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if params["uuid"] not in self.applications:
                return 404, NOT_FOUND
            return 200, self.envs.get(params["uuid"], [])

        async def rollback_images(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if params["uuid"] not in self.applications:
                return 404, NOT_FOUND
            return 200, self.rollback_images.get(params["uuid"], [])

        async def rollback(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if params["uuid"] not in self.applications:
                return 404, NOT_FOUND
            tags = [image["tag"] for image in self.rollback_images.get(params["uuid"], [])]
            if not isinstance(body, dict) or body.get("commit") not in tags:
                return self._invalid({"commit": ["The selected commit is invalid."]})
            deployment = self._queue_deployment(params["uuid"])
            return 200, {"message": "Rollback queued.", "deployment_uuid": deployment.uuid}

        async def create_database(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            body = body if isinstance(body, dict) else {}
            missing = [name for name in ("server_uuid", "project_uuid", "environment_name", "environment_uuid")
                       if not body.get(name)]
            if missing:
                return self._invalid({name: [f"The {name.replace('_', ' ')} field is required."]
                                      for name in missing})
            if body["server_uuid"] not in self.servers:
                return self._invalid({"server_uuid": ["Server not found."]})
            uuid = self._new_uuid()
            self.databases[uuid] = {"id": len(self.databases) + 1, "uuid": uuid,
                                    "name": body.get("name") or f"{params['kind']}-{uuid}",
                                    "status": "exited", "database_type": f"standalone-{params['kind']}"}
            return 201, {"uuid": uuid, "internal_db_url": f"{params['kind']}://user:pass@{uuid}:5432/db"}

        async def create_server(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            body = body if isinstance(body, dict) else {}
            errors = {name: [f"The {name} field is required."] for name in ("name", "ip", "private_key_uuid")
                      if not body.get(name)}
            if body.get("private_key_uuid") and body["private_key_uuid"] not in self.keys:
                errors["private_key_uuid"] = ["Private key not found."]
            if errors:
                return self._invalid(errors)
            uuid = self._new_uuid()
            self.servers[uuid] = {"id": len(self.servers) + 1, "uuid": uuid, "name": body["name"],
                                  "ip": body["ip"], "port": body.get("port", 22), "user": body.get("user", "root"),
                                  "description": body.get("description"), "settings": {"is_reachable": False}}
            return 201, {"uuid": uuid}

        async def validate_server(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if params["uuid"] not in self.servers:
                return 404, NOT_FOUND
            return 201, {"message": "Validation started."}

        async def create_project(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if not isinstance(body, dict) or not body.get("name"):
                return self._invalid({"name": ["The name field is required."]})
            uuid = self._new_uuid()
            self.projects[uuid] = {"id": len(self.projects) + 1, "uuid": uuid, "name": body["name"],
                                   "description": body.get("description")}
            self.environments[uuid] = [{"id": 1, "uuid": self._new_uuid(), "name": "production"}]
            return 201, {"uuid": uuid}

        async def environments(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            found = self.environments.get(params["uuid"])
            return (200, found) if found is not None else (404, NOT_FOUND)

        async def service_logs(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if params["uuid"] not in self.services:
                return 404, NOT_FOUND
            if "sub_service_name" not in query:
                return self._invalid({"sub_service_name": ["The sub service name field is required."]})
            return 200, {"logs": f"{query['sub_service_name']}: ready"}

        async def running_deployments(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, [self._deployment_view(d) for d in self.deployments.values()
                         if self.deployment_status(d) in ("queued", "in_progress")]

        async def application_deployments(params: dict[str, str], query: dict[str, str],
                                          body: Any) -> tuple[int, Any]:
            found = [self._deployment_view(d) for d in reversed(self.deployments.values())
                     if d.application_uuid == params["uuid"]]
            skip, take = int(query.get("skip", 0)), int(query.get("take", 10))
            return 200, {"count": len(found), "deployments": found[skip:skip + take]}

        async def get_deployment(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            deployment = self.deployments.get(params["uuid"])
            return (200, self._deployment_view(deployment)) if deployment else (404, NOT_FOUND)

        async def cancel(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            deployment = self.deployments.get(params["uuid"])
            if deployment is None:
                return 404, NOT_FOUND
            status = self.deployment_status(deployment)
            if status not in ("queued", "in_progress"):
                return 400, {"message": f"Deployment cannot be cancelled. Current status: {status}"}
            deployment.cancelled = True
            return 200, {"message": "Deployment cancelled successfully.", "deployment_uuid": deployment.uuid,
                         "status": "cancelled-by-user"}

        async def resources(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            everything = [*self.applications.values(), *self.databases.values(), *self.services.values()]
            return 200, [{"uuid": r["uuid"], "name": r["name"], "status": r.get("status")} for r in everything]

        async def server_resources(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if params["uuid"] not in self.servers:
                return 404, NOT_FOUND
            return await resources(params, query, body)

        async def server_domains(params: dict[str, str], query: dict[str, str], body: Any) -> tuple[int, Any]:
            if params["uuid"] not in self.servers:
                return 404, NOT_FOUND
            return 200, [{"ip": self.servers[params["uuid"]]["ip"],
                          "domains": [a["fqdn"] for a in self.applications.values()]}]

        route("GET", "/version")(version)
        route("GET", "/applications")(list_applications)
        route("GET", "/applications/{uuid}")(one(self.applications))
        route("POST", "/deploy")(deploy)
        route("POST", "/applications/{uuid}/start")(queue("running:healthy", "Deployment request queued."))
        route("POST", "/applications/{uuid}/restart")(queue("running:healthy", "Restart request queued."))
        route("POST", "/applications/{uuid}/stop")(set_status(self.applications, "exited:unhealthy",
                                                              "Application stopping request queued."))
        route("GET", "/applications/{uuid}/logs")(logs(self.applications))
        route("GET", "/applications/{uuid}/envs")(envs)
        route("GET", "/applications/{uuid}/rollback-images")(rollback_images)
        route("POST", "/applications/{uuid}/rollback")(rollback)
        route("GET", "/databases")(listing(self.databases))
        route("POST", "/databases/{kind}")(create_database)
        route("GET", "/databases/{uuid}")(one(self.databases))
        route("POST", "/databases/{uuid}/start")(set_status(self.databases, "running:healthy",
                                                            "Database starting request queued."))
        route("POST", "/databases/{uuid}/stop")(set_status(self.databases, "exited",
                                                           "Database stopping request queued."))
        route("POST", "/databases/{uuid}/restart")(set_status(self.databases, "running:healthy",
                                                              "Database restarting request queued."))
        route("GET", "/databases/{uuid}/logs")(logs(self.databases))
        route("GET", "/servers")(listing(self.servers))
        route("POST", "/servers")(create_server)
        route("GET", "/servers/{uuid}")(one(self.servers))
        route("GET" if self.validate_get_only else "POST", "/servers/{uuid}/validate")(validate_server)
        route("GET", "/servers/{uuid}/resources")(server_resources)
        route("GET", "/servers/{uuid}/domains")(server_domains)
        route("GET", "/projects")(listing(self.projects))
        route("POST", "/projects")(create_project)
        route("GET", "/projects/{uuid}")(one(self.projects))
        route("GET", "/projects/{uuid}/environments")(environments)
        route("GET", "/services")(listing(self.services))
        route("GET", "/services/{uuid}")(one(self.services))
        route("POST", "/services/{uuid}/start")(set_status(self.services, "running:healthy",
                                                           "Service starting request queued."))
        route("POST", "/services/{uuid}/stop")(set_status(self.services, "exited",
                                                          "Service stopping request queued."))
        route("POST", "/services/{uuid}/restart")(set_status(self.services, "running:healthy",
                                                             "Service restaring request queued."))
        route("GET", "/services/{uuid}/logs")(service_logs)
        route("GET", "/deployments")(running_deployments)
        route("GET", "/deployments/applications/{uuid}")(application_deployments)
        route("GET", "/deployments/{uuid}")(get_deployment)
        route("POST", "/deployments/{uuid}/cancel")(cancel)
        route("GET", "/resources")(resources)
        route("GET", "/security/keys")(listing(self.keys))
