"""A Coolify-compatible server for the tests and the sandbox: the routes our operations use, in the shapes of
Coolify's own OpenAPI file, with state that behaves. Every API request is checked against that file by the
contract every stand-in shares (`sandbox/contract.py`: route, method, parameters, body fields); a request the
real Coolify would not accept is recorded in `violations`, which the tests assert to be empty, and so is one
sent without `Accept: application/json` (Coolify answers such a request with HTML).

The file is package data (`sandbox/openapi/coolify.json`, Coolify v4.3.11's own, as in
`shared/coolify/openapi.json`), so the checks need nothing beside the checkout."""

from __future__ import annotations

import json
import random
import time
import uuid as uuid_module
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from sandbox.contract import VendorContract
from sandbox.stand_in import Call, ReceivedRequest, RouteHandler, StandIn

API_PREFIX = "/api/v1"
LOOSE_FORMATS = ("uuid",)  # Coolify's uuids are cuid2 strings, never the RFC 4122 UUIDs two routes of its file ask for
NOT_FOUND = {"message": "Resource not found."}


def coolify_contract() -> VendorContract:
    """Coolify's file as the contract every stand-in shares checks it (built once per process)."""
    return VendorContract.load("coolify", loose_formats=LOOSE_FORMATS)


def reply(payload: Any, status: int = 200) -> Response:
    """Coolify's answer: JSON, or plain text where Coolify answers a bare string (its version)."""
    if isinstance(payload, str):
        return PlainTextResponse(payload, status)
    return JSONResponse(payload, status)


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


class FakeCoolify(StandIn):
    """`token` is the API token it takes (`read_only_token`, if given, may only read); `stage_seconds` is how long
    a deployment stays queued, then in progress; `failure_rate` answers that share of calls 500; `seed` fixes
    the uuids it makes."""

    def __init__(self, token: str = "coolify-test-token", *, contract: VendorContract | None = None,
                 stage_seconds: float = 0.2, version: str = "4.3.11", delay_seconds: float = 0.0,
                 failure_rate: float = 0.0, read_only_token: str | None = None, seed: int = 7,
                 validate_get_only: bool = False) -> None:
        super().__init__(contract or coolify_contract, API_PREFIX, delay_seconds)
        self.token = token
        self.read_only_token = read_only_token
        self.stage_seconds = stage_seconds
        self.version = version
        self.failure_rate = failure_rate
        self.validate_get_only = validate_get_only  # behave like Coolify before 4.2
        self.rate_limited_for: float = 0  # seconds of Retry-After to answer with, while > 0
        self.next_deployment_fails = False
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
        self._declare_routes()

    # -- checks and refusals ----------------------------------------------------------------------------

    def problems(self, request: ReceivedRequest, pairs: list[tuple[str, str]], raw_body: bytes,
                 content_type: str | None) -> list[str]:
        found = [] if request.headers.get("accept") == "application/json" else [
            f"{request.method} {request.path}: sent without Accept: application/json"]
        if self.validate_get_only and request.method == "GET" and request.path.endswith("/validate"):
            return found  # the route of Coolify before 4.2, which its file (4.3) no longer has
        return super().problems(request, pairs, raw_body, content_type) + found

    async def gate(self, call: Call) -> Response | None:
        given = call.request.authorization or ""
        if given not in (f"Bearer {self.token}", f"Bearer {self.read_only_token}"):
            return JSONResponse({"message": "Unauthenticated."}, 401)
        if call.request.method != "GET" and given == f"Bearer {self.read_only_token}":
            return JSONResponse({"message": "You are not allowed to perform this action."}, 403)
        if self.failure_rate and self._random.random() < self.failure_rate:
            return JSONResponse({"message": "Server Error"}, 500)
        if self.rate_limited_for:
            return JSONResponse({"message": "Rate limit exceeded. Please try again later."}, 429,
                                headers={"Retry-After": str(int(self.rate_limited_for))})
        return None

    def missing(self, call: Call) -> Response:
        if call.request.api and call.request.method == "GET" and self.methods_for(call.request.path) == ["POST"]:
            return JSONResponse({"message": "This endpoint has changed to a POST request."}, 405)
        return JSONResponse({"message": "Not found."}, 404)

    # -- behaviour ----------------------------------------------------------------------------------

    def _new_uuid(self) -> str:
        self._ids += 1
        return f"{uuid_module.UUID(int=self._random.getrandbits(128)).hex[:7]}{self._ids}"

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
    def _invalid(errors: dict[str, list[str]]) -> Response:
        return JSONResponse({"message": "Validation failed.", "errors": errors}, 422)

    def _declare_routes(self) -> None:
        route = self.route

        def not_found() -> Response:
            return JSONResponse(NOT_FOUND, 404)

        def listing(store: Table) -> RouteHandler:
            async def handler(call: Call) -> Response:
                return reply(list(store.values()))
            return handler

        def one(store: Table) -> RouteHandler:
            async def handler(call: Call) -> Response:
                found = store.get(call.params["uuid"])
                return reply(found) if found else not_found()
            return handler

        def set_status(store: Table, status: str, message: str) -> RouteHandler:
            async def handler(call: Call) -> Response:
                found = store.get(call.params["uuid"])
                if not found:
                    return not_found()
                found["status"] = status
                return reply({"message": message})
            return handler

        def logs(store: Table) -> RouteHandler:
            async def handler(call: Call) -> Response:
                if call.params["uuid"] not in store:
                    return not_found()
                lines = int(call.query.get("lines", 100))
                return reply({"logs": "\n".join(f"log line {n}" for n in range(1, lines + 1))})
            return handler

        def lifecycle(path: str, table: Table, noun: str, restarting: str = "restarting") -> None:
            """start, stop and restart of a database or service: its status set, Coolify's message answered."""
            for action, status, doing in (("start", "running:healthy", "starting"), ("stop", "exited", "stopping"),
                                          ("restart", "running:healthy", restarting)):
                route("POST", f"/{path}/{{uuid}}/{action}")(set_status(table, status,
                                                                      f"{noun} {doing} request queued."))

        def queue(status: str, message: str) -> RouteHandler:
            async def handler(call: Call) -> Response:
                application = self.applications.get(call.params["uuid"])
                if application is None:
                    return not_found()
                application["status"] = status
                deployment = self._queue_deployment(application["uuid"])
                return reply({"message": message, "deployment_uuid": deployment.uuid})
            return handler

        @route("GET", "/api/health", api=False)
        async def health(call: Call) -> Response:
            return PlainTextResponse("OK")

        @route("GET", "/version")
        async def version(call: Call) -> Response:
            return reply(self.version)

        @route("GET", "/applications")
        async def list_applications(call: Call) -> Response:
            tag = call.query.get("tag")
            return reply([a for a in self.applications.values() if tag is None or tag in a["tags"]])

        route("GET", "/applications/{uuid}")(one(self.applications))

        @route("POST", "/deploy")
        async def deploy(call: Call) -> Response:
            application = self.applications.get(call.query.get("uuid", ""))
            if application is None:
                return not_found()
            deployment = self._queue_deployment(application["uuid"])
            return reply({"deployments": [{"message": f"Application {application['name']} deployment queued.",
                                           "resource_uuid": application["uuid"],
                                           "deployment_uuid": deployment.uuid}]})

        route("POST", "/applications/{uuid}/start")(queue("running:healthy", "Deployment request queued."))
        route("POST", "/applications/{uuid}/restart")(queue("running:healthy", "Restart request queued."))
        route("POST", "/applications/{uuid}/stop")(set_status(self.applications, "exited:unhealthy",
                                                              "Application stopping request queued."))
        route("GET", "/applications/{uuid}/logs")(logs(self.applications))

        @route("GET", "/applications/{uuid}/envs")
        async def envs(call: Call) -> Response:
            if call.params["uuid"] not in self.applications:
                return not_found()
            return reply(self.envs.get(call.params["uuid"], []))

        @route("GET", "/applications/{uuid}/rollback-images")
        async def rollback_images(call: Call) -> Response:
            if call.params["uuid"] not in self.applications:
                return not_found()
            return reply(self.rollback_images.get(call.params["uuid"], []))

        @route("POST", "/applications/{uuid}/rollback")
        async def rollback(call: Call) -> Response:
            if call.params["uuid"] not in self.applications:
                return not_found()
            tags = [image["tag"] for image in self.rollback_images.get(call.params["uuid"], [])]
            if not isinstance(call.body, dict) or call.body.get("commit") not in tags:
                return self._invalid({"commit": ["The selected commit is invalid."]})
            deployment = self._queue_deployment(call.params["uuid"])
            return reply({"message": "Rollback queued.", "deployment_uuid": deployment.uuid})

        route("GET", "/databases")(listing(self.databases))

        @route("POST", "/databases/{kind}")
        async def create_database(call: Call) -> Response:
            body = call.body if isinstance(call.body, dict) else {}
            kind = call.params["kind"]
            missing = [name for name in ("server_uuid", "project_uuid", "environment_name", "environment_uuid")
                       if not body.get(name)]
            if missing:
                return self._invalid({name: [f"The {name.replace('_', ' ')} field is required."]
                                      for name in missing})
            if body["server_uuid"] not in self.servers:
                return self._invalid({"server_uuid": ["Server not found."]})
            uuid = self._new_uuid()
            self.databases[uuid] = {"id": len(self.databases) + 1, "uuid": uuid, "name": body.get("name")
                                    or f"{kind}-{uuid}", "status": "exited", "database_type": f"standalone-{kind}"}
            return reply({"uuid": uuid, "internal_db_url": f"{kind}://user:pass@{uuid}:5432/db"}, 201)

        route("GET", "/databases/{uuid}")(one(self.databases))
        lifecycle("databases", self.databases, "Database")
        route("GET", "/databases/{uuid}/logs")(logs(self.databases))
        route("GET", "/servers")(listing(self.servers))

        @route("POST", "/servers")
        async def create_server(call: Call) -> Response:
            body = call.body if isinstance(call.body, dict) else {}
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
            return reply({"uuid": uuid}, 201)

        route("GET", "/servers/{uuid}")(one(self.servers))

        @route("GET" if self.validate_get_only else "POST", "/servers/{uuid}/validate")
        async def validate_server(call: Call) -> Response:
            if call.params["uuid"] not in self.servers:
                return not_found()
            return reply({"message": "Validation started."}, 201)

        @route("GET", "/resources")
        async def resources(call: Call) -> Response:
            everything = [*self.applications.values(), *self.databases.values(), *self.services.values()]
            return reply([{"uuid": r["uuid"], "name": r["name"], "status": r.get("status")} for r in everything])

        @route("GET", "/servers/{uuid}/resources")
        async def server_resources(call: Call) -> Response:
            return await resources(call) if call.params["uuid"] in self.servers else not_found()

        @route("GET", "/servers/{uuid}/domains")
        async def server_domains(call: Call) -> Response:
            if call.params["uuid"] not in self.servers:
                return not_found()
            return reply([{"ip": self.servers[call.params["uuid"]]["ip"],
                           "domains": [a["fqdn"] for a in self.applications.values()]}])

        route("GET", "/projects")(listing(self.projects))

        @route("POST", "/projects")
        async def create_project(call: Call) -> Response:
            body = call.body
            if not isinstance(body, dict) or not body.get("name"):
                return self._invalid({"name": ["The name field is required."]})
            uuid = self._new_uuid()
            self.projects[uuid] = {"id": len(self.projects) + 1, "uuid": uuid, "name": body["name"],
                                   "description": body.get("description")}
            self.environments[uuid] = [{"id": 1, "uuid": self._new_uuid(), "name": "production"}]
            return reply({"uuid": uuid}, 201)

        route("GET", "/projects/{uuid}")(one(self.projects))

        @route("GET", "/projects/{uuid}/environments")
        async def environments(call: Call) -> Response:
            found = self.environments.get(call.params["uuid"])
            return reply(found) if found is not None else not_found()

        route("GET", "/services")(listing(self.services))
        route("GET", "/services/{uuid}")(one(self.services))
        lifecycle("services", self.services, "Service", restarting="restaring")  # Coolify's own spelling

        @route("GET", "/services/{uuid}/logs")
        async def service_logs(call: Call) -> Response:
            if call.params["uuid"] not in self.services:
                return not_found()
            if "sub_service_name" not in call.query:
                return self._invalid({"sub_service_name": ["The sub service name field is required."]})
            return reply({"logs": f"{call.query['sub_service_name']}: ready"})

        @route("GET", "/deployments")
        async def running_deployments(call: Call) -> Response:
            return reply([self._deployment_view(d) for d in self.deployments.values()
                          if self.deployment_status(d) in ("queued", "in_progress")])

        @route("GET", "/deployments/applications/{uuid}")
        async def application_deployments(call: Call) -> Response:
            found = [self._deployment_view(d) for d in reversed(self.deployments.values())
                     if d.application_uuid == call.params["uuid"]]
            skip, take = int(call.query.get("skip", 0)), int(call.query.get("take", 10))
            return reply({"count": len(found), "deployments": found[skip:skip + take]})

        @route("GET", "/deployments/{uuid}")
        async def get_deployment(call: Call) -> Response:
            deployment = self.deployments.get(call.params["uuid"])
            return reply(self._deployment_view(deployment)) if deployment else not_found()

        @route("POST", "/deployments/{uuid}/cancel")
        async def cancel(call: Call) -> Response:
            deployment = self.deployments.get(call.params["uuid"])
            if deployment is None:
                return not_found()
            status = self.deployment_status(deployment)
            if status not in ("queued", "in_progress"):
                return reply({"message": f"Deployment cannot be cancelled. Current status: {status}"}, 400)
            deployment.cancelled = True
            return reply({"message": "Deployment cancelled successfully.", "deployment_uuid": deployment.uuid,
                          "status": "cancelled-by-user"})

        route("GET", "/security/keys")(listing(self.keys))
