"""An n8n-compatible server for the tests: the Public API routes the n8n handler uses (`/api/v1`, with cursor
paging and the API key's scopes) and what lives beside it: `/healthz` and the workflows' own webhooks, which
answer at once ("Workflow was started") or with the workflow's result, and start executions that run, then
succeed or fail. Every Public API request is checked against `sandbox/openapi/n8n.json`
(`sandbox/contract.py`); webhooks and `/healthz` are not part of that API."""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response

from sandbox.contract import VendorContract
from sandbox.stand_in import Call, RouteHandler, StandIn

API_PREFIX = "/api/v1"
CREATED = "2026-01-05T10:00:00.000Z"


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status, headers=headers)


def _node(name: str, node_type: str, parameters: dict[str, Any] | None = None, *, disabled: bool = False,
          webhook_id: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": f"node-{name}", "name": name, "type": node_type, "typeVersion": 2,
                            "position": [0, 0], "parameters": parameters or {}}
    if disabled:
        node["disabled"] = True
    if webhook_id:
        node["webhookId"] = webhook_id
    return node


def _webhook(name: str, path: str, method: str, response_mode: str, *, disabled: bool = False) -> dict[str, Any]:
    return _node(name, "n8n-nodes-base.webhook", {"path": path, "httpMethod": method, "responseMode": response_mode},
                 disabled=disabled, webhook_id=f"hook-{path.replace('/', '-')}")


class FakeN8n(StandIn):
    """`api_key` is the key it takes; `missing_scopes` are scopes that key lacks (its calls answer 403)."""

    def __init__(self, api_key: str = "n8n-test-key", *, clock: Callable[[], float] = time.time,
                 contract: VendorContract | None = None, delay_seconds: float = 0.0) -> None:
        super().__init__(contract or functools.partial(VendorContract.load, "n8n"), API_PREFIX, delay_seconds)
        self.api_key = api_key
        self.clock = clock
        self.missing_scopes: set[str] = set()
        self.rate_limited_for = 0
        self.healthy = True
        self.test_listening = False  # the editor waits for a test call (/webhook-test/ answers only then)
        self.webhook_delay_seconds = 0.0
        self.next_execution_fails = False
        self.publication_blocked = False
        self.webhook_calls: list[dict[str, Any]] = []  # method, path, query, body and headers of each
        self._ids = itertools.count(100)
        self.workflows: dict[str, dict[str, Any]] = {}
        self._workflow("VzqKEW0ShTXA5vPj", "nightly-report", True,
                       [_webhook("Webhook", "nightly", "POST", "lastNode"), _node("Summarise", "n8n-nodes-base.set")],
                       tags=["reports"])
        self._workflow("Ab3dE5gH7jK9mN1p", "intake", True,
                       [_webhook("Form", "intake/form", "GET", "onReceived"),
                        _webhook("Old form", "old-intake", "POST", "onReceived", disabled=True)])
        self._workflow("Zz9yX8wV7uT6sR5q", "draft", False, [_webhook("Webhook", "draft", "POST", "lastNode")])
        self._workflow("Cr0nOnlyWorkflow", "cleanup", True, [_node("Every night", "n8n-nodes-base.scheduleTrigger")])
        self._workflow("Dup1icateAAAAAAA", "twin", False, [])
        self._workflow("Dup1icateBBBBBBB", "twin", False, [])
        self.executions: dict[int, dict[str, Any]] = {}
        for status in ("success", "error", "running"):
            self._execution("VzqKEW0ShTXA5vPj", status, "trigger")
        self._declare_routes()

    # -- state ------------------------------------------------------------------------------------

    def _workflow(self, workflow_id: str, name: str, active: bool, nodes: list[dict[str, Any]],
                  tags: list[str] | None = None) -> None:
        self.workflows[workflow_id] = {
            "id": workflow_id, "name": name, "active": active, "isArchived": False, "nodes": nodes,
            "connections": {}, "settings": {"executionOrder": "v1"}, "versionId": f"v-{workflow_id}",
            "tags": [{"id": f"t-{tag}", "name": tag, "createdAt": CREATED, "updatedAt": CREATED} for tag in tags or []],
            "createdAt": CREATED, "updatedAt": CREATED}

    def _execution(self, workflow_id: str, status: str, mode: str, retry_of: str | None = None) -> dict[str, Any]:
        execution_id = next(self._ids)
        started = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.clock()))
        running = status == "running"
        execution = {"id": str(execution_id), "workflowId": workflow_id, "mode": mode, "status": status,
                     "finished": status == "success", "retryOf": retry_of, "retrySuccessId": None,
                     "startedAt": started, "stoppedAt": None if running else started, "waitTill": None,
                     "fate": "error" if self.next_execution_fails else "success", "reads": 0}
        self.next_execution_fails = False
        self.executions[execution_id] = execution
        return execution

    def _public(self, execution: dict[str, Any], with_data: bool) -> dict[str, Any]:
        shown = {key: value for key, value in execution.items() if key not in ("fate", "reads")}
        if with_data:
            failed = execution["status"] == "error"
            shown["data"] = {"resultData": {"runData": {}, "lastNodeExecuted": "Summarise",
                                            **({"error": {"message": "Cannot read properties of undefined",
                                                          "node": {"name": "Summarise"}}} if failed else {})}}
        return shown

    def _advance(self) -> None:
        """Running executions move on each time executions are listed: they end, with their fate, on the third."""
        for execution in self.executions.values():
            if execution["status"] == "running" and execution["fate"]:
                execution["reads"] += 1
                if execution["reads"] >= 3:
                    execution.update(status=execution["fate"], finished=execution["fate"] == "success",
                                     stoppedAt=execution["startedAt"])

    # -- refusals ---------------------------------------------------------------------------------

    async def gate(self, call: Call) -> Response | None:
        if call.request.headers.get("x-n8n-api-key") != self.api_key:
            return _json({"message": "unauthorized"}, 401)
        if self.rate_limited_for:
            return _json({"message": "Too many requests"}, 429, {"Retry-After": str(self.rate_limited_for)})
        if self._scope(call) in self.missing_scopes:
            return _json({"message": "Forbidden"}, 403)
        return None

    def _scope(self, call: Call) -> str | None:
        """The scope n8n's own file says the route needs (`x-required-scope`)."""
        if self.contract is None:
            return None
        template = self.contract.template(call.request.method, call.request.path)
        operation = self.contract.spec["paths"].get(template, {}).get(call.request.method.lower(), {})
        scope: str | None = operation.get("x-required-scope")
        return scope

    def missing(self, call: Call) -> Response:
        return _json({"message": "not found"}, 404)

    # -- routes ---------------------------------------------------------------------------------------

    @staticmethod
    def _page(call: Call, items: list[Any], default_limit: int = 100) -> Response:
        """n8n's cursor paging: `limit` items and the cursor of the next page, or null on the last."""
        cursor = call.query.get("cursor")
        offset = int(base64.b64decode(cursor).decode()) if cursor else 0
        limit = int(call.query.get("limit", default_limit))
        following = offset + limit
        next_cursor = base64.b64encode(str(following).encode()).decode() if following < len(items) else None
        return _json({"data": items[offset:following], "nextCursor": next_cursor})

    def _declare_routes(self) -> None:
        route = self.route

        @route("GET", "/healthz", api=False)
        async def healthz(call: Call) -> Response:
            return _json({"status": "ok"}) if self.healthy else _json({"status": "error"}, 503)

        @route("GET", "/workflows")
        async def workflows(call: Call) -> Response:
            query = call.query
            tags = set(filter(None, query.get("tags", "").split(",")))
            found = [workflow for workflow in self.workflows.values()
                     if query.get("active") in (None, str(workflow["active"]).lower())
                     and query.get("name") in (None, workflow["name"])
                     and tags <= {tag["name"] for tag in workflow["tags"]}]
            return self._page(call, found)

        def workflow_of(call: Call) -> dict[str, Any] | None:
            return self.workflows.get(call.params["workflowId"])

        @route("GET", "/workflows/{workflowId}")
        async def workflow(call: Call) -> Response:
            found = workflow_of(call)
            return _json(found) if found else self.missing(call)

        @route("POST", "/workflows/{workflowId}/activate")
        async def activate(call: Call) -> Response:
            found = workflow_of(call)
            if found is None:
                return self.missing(call)
            if self.publication_blocked:
                return _json({"message": "Publication is blocked by an open review", "reason": "review_pending",
                              "workflowReviewRequestId": "rev-1"}, 409)
            if not found["nodes"]:
                return _json({"message": "Workflow has no node to start the workflow - at least one trigger, poller "
                                         "or webhook node is required"}, 400)
            found["active"] = True
            return _json(found)

        @route("POST", "/workflows/{workflowId}/deactivate")
        async def deactivate(call: Call) -> Response:
            found = workflow_of(call)
            if found is None:
                return self.missing(call)
            found["active"] = False
            return _json(found)

        @route("GET", "/executions")
        async def executions(call: Call) -> Response:
            self._advance()
            query = call.query
            found = [self._public(execution, query.get("includeData") == "true")
                     for _, execution in sorted(self.executions.items(), reverse=True)
                     if query.get("workflowId") in (None, execution["workflowId"])
                     and query.get("status") in (None, execution["status"])]
            return self._page(call, found)

        def execution_of(call: Call) -> dict[str, Any] | None:
            return self.executions.get(int(call.params["executionId"]))

        @route("GET", "/executions/{executionId}")
        async def execution(call: Call) -> Response:
            found = execution_of(call)
            return _json(self._public(found, call.query.get("includeData") == "true")) if found else self.missing(call)

        @route("DELETE", "/executions/{executionId}")
        async def delete_execution(call: Call) -> Response:
            found = execution_of(call)
            if found is None:
                return self.missing(call)
            del self.executions[int(found["id"])]
            return _json(self._public(found, False))

        @route("POST", "/executions/{executionId}/retry")
        async def retry(call: Call) -> Response:
            found = execution_of(call)
            if found is None:
                return self.missing(call)
            if found["status"] == "success":
                return _json({"message": "The execution succeeded, so it cannot be retried."}, 409)
            retried = self._execution(found["workflowId"], "success", "retry", retry_of=found["id"])
            return _json(self._public(retried, False))

        @route("POST", "/executions/{executionId}/stop")
        async def stop(call: Call) -> Response:
            found = execution_of(call)
            if found is None:
                return self.missing(call)
            if found["status"] not in ("running", "waiting", "new"):
                return _json({"message": f"Cannot stop execution {found['id']}: it is {found['status']}"}, 409)
            found.update(status="canceled", fate=None)
            return _json(self._public(found, False))

        for prefix in ("webhook", "webhook-test"):
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                route(method, f"/{prefix}/{{path:path}}", api=False)(self._hook(prefix == "webhook-test"))

    def _hook(self, test: bool) -> RouteHandler:
        async def answer(call: Call) -> Response:
            request = call.request
            self.webhook_calls.append({"method": request.method, "path": request.path, "query": request.query,
                                       "body": request.body, "headers": request.headers})
            await asyncio.sleep(self.webhook_delay_seconds)
            wanted = call.params["path"]
            for workflow in self.workflows.values():
                for node in workflow["nodes"]:
                    parameters = node.get("parameters") or {}
                    if (node["type"] != "n8n-nodes-base.webhook" or node.get("disabled") or parameters.get("path")
                            != wanted or parameters.get("httpMethod") != request.method
                            or not (self.test_listening if test else workflow["active"])):
                        continue
                    started = self._execution(workflow["id"], "running", "webhook")
                    if parameters.get("responseMode") == "onReceived":
                        return _json({"message": "Workflow was started"})
                    return _json({"ok": True, "executionId": started["id"], "received": request.body})
            return _json({"code": 404, "message": f'The requested webhook "{request.method} {wanted}" is not '
                                                  "registered.", "hint": "Activate the workflow"}, 404)
        return answer
