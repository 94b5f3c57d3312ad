"""n8n: workflows, executions and webhooks, against n8n's Public API (shared/spec/services.md "n8n",
shared/n8n/openapi.json) and the workflows' own webhooks.

Every operation is declared once below with its arguments, risk, cost and the n8n route it calls. The Public
API cannot start a workflow: `execute` finds the workflow's Webhook trigger and calls it, at N8N_WEBHOOK_URL
(default: the instance's root), without the API key. A workflow argument is an id or a name."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self, cast

from pydantic import Field, field_validator

from gateway_core.clock import Clock
from gateway_core.config import Settings
from gateway_core.errors import (
    Conflict,
    GatewayError,
    RateLimitExceeded,
    ResourceNotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from gateway_core.handlers.base import ServiceHandler
from gateway_core.handlers.rest import (
    Route,
    choose_route,
    health_answer,
    instance_root,
    json_answer,
    ms_since,
    path_segment,
    pick,
    priced,
    send,
)
from gateway_core.health import HealthReport
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable, ResultShaper, Risk, Target
from gateway_core.upstream import UpstreamClient, UpstreamResponse

API_PREFIX = "/api/v1"
WEBHOOK_NODE = "n8n-nodes-base.webhook"
WORKFLOW_ID = re.compile(r"[A-Za-z0-9]{16}|\d+")  # n8n's nanoid ids (numbers before 1.0)
STILL_GOING = ("new", "running", "waiting")
HEALTH_KEY_CHECK_SECONDS = 5.0
POLL_SECONDS = 1.0  # first interval when following an execution
# The API-key scope each route needs (the routes' `x-required-scope` in n8n's file; a test keeps them equal).
SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/workflows"): "workflow:list", ("GET", "/workflows/{workflowId}"): "workflow:read",
    ("POST", "/workflows/{workflowId}/activate"): "workflow:activate",
    ("POST", "/workflows/{workflowId}/deactivate"): "workflow:deactivate",
    ("GET", "/executions"): "execution:list", ("GET", "/executions/{executionId}"): "execution:read",
    ("DELETE", "/executions/{executionId}"): "execution:delete",
    ("POST", "/executions/{executionId}/retry"): "execution:retry",
    ("POST", "/executions/{executionId}/stop"): "execution:stop",
}

# -- argument models ---------------------------------------------------------------------------------

WORKFLOW = Field(min_length=1, description="the workflow's id or name")
CURSOR = Field(None, description="the nextCursor of the page before")
ExecutionStatus = Literal["canceled", "crashed", "error", "new", "running", "success", "unknown", "waiting"]


def _json_object(value: Any) -> Any:
    """An object, or JSON text of one (as agents and the slash form send it)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if value is not None and not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


class WorkflowArgs(OperationArgs):
    workflowId: str = WORKFLOW


class ExecuteArgs(WorkflowArgs):
    data: dict[str, Any] | str | None = Field(None, description="what the webhook receives: an object or JSON text")
    wait: float = Field(0, ge=0, le=3600, description="seconds to follow the execution until it ends")

    _parse_data = field_validator("data", mode="before")(_json_object)

    def extra_seconds(self) -> float:
        return self.wait


class ListWorkflowsArgs(OperationArgs):
    active: bool | None = None
    tags: str | list[str] | None = Field(None, description="comma-separated tag names")
    name: str | None = None
    projectId: str | None = None
    limit: int = Field(100, ge=1, le=250)
    cursor: str | None = CURSOR


class ActivateArgs(WorkflowArgs):
    versionId: str | None = Field(None, description="the version to publish (default: the latest)")


class ExecutionArgs(OperationArgs):
    executionId: int = Field(ge=1, description="the execution's id")


class GetExecutionArgs(ExecutionArgs):
    includeData: bool = Field(False, description="the nodes' data too (can be large)")


class ListExecutionsArgs(OperationArgs):
    workflowId: str | None = Field(None, description="only this workflow's (id or name)")
    status: ExecutionStatus | None = None
    projectId: str | None = None
    limit: int = Field(20, ge=1, le=250)
    cursor: str | None = CURSOR


class FailedExecutionsArgs(OperationArgs):
    workflowId: str | None = Field(None, description="only this workflow's (id or name)")
    limit: int = Field(20, ge=1, le=250)
    cursor: str | None = CURSOR


class RetryArgs(ExecutionArgs):
    loadWorkflow: bool | None = Field(None, description="run the workflow as saved now, not as it was")


class TestWebhookArgs(OperationArgs):
    path: str = Field(min_length=1, description="the Webhook node's path")
    data: dict[str, Any] | str | None = Field(None, description="an object or JSON text")
    test: bool = Field(False, description="the editor's test URL (/webhook-test/), live only while it listens")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"

    _parse_data = field_validator("data", mode="before")(_json_object)


# -- the declarations --------------------------------------------------------------------------------

Prepare = Callable[["N8nHandler", dict[str, Any]], Awaitable[None]]
Follow = Callable[["N8nHandler", dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class N8nOperation(Operation):
    """`routes` on the Public API (the first whose `when` is set, else the first without one), or `webhook`:
    the call goes to a workflow's webhook (`webhook_path`, `webhook_method` among the values). `label` is
    `data.operation` as upstream named it; `prepare` completes the arguments first; `every_page` follows
    `nextCursor` to the end; `follow` continues after the call. Neither routes nor webhook: the health check."""

    routes: tuple[Route, ...] = ()
    webhook: bool = False
    label: str = ""
    prepare: tuple[Prepare, ...] = ()
    every_page: bool = False
    follow: Follow | None = None


def _op(name: str, args: type[OperationArgs], risk: Risk, description: str, *routes: Route, label: str = "",
        cap: int | None = None, group: str, aliases: tuple[str, ...] = (), target: Target | None = None,
        shape: ResultShaper | None = None, webhook: bool = False, prepare: tuple[Prepare, ...] = (),
        every_page: bool = False, follow: Follow | None = None,
        slash_rest: Literal["words", "word_and_json"] = "words") -> N8nOperation:
    """`cap` is the spec's per-operation token count, priced at the catalog's rate."""
    return N8nOperation(name, args, risk, description, tokens=cap, cost_usd=priced("n8n", cap), group=group,
                        aliases=aliases, target=target, shape=shape, slash_rest=slash_rest, routes=routes,
                        webhook=webhook, label=label or name.replace("-", "_"), prepare=prepare,
                        every_page=every_page, follow=follow)


def GET(path: str, *query: str, **fixed: str) -> Route:
    return Route("GET", path, query, fixed_query=fixed)


def POST(path: str, *body: str) -> Route:
    return Route("POST", path, body=body)


def _tags(workflow: Any) -> list[Any]:
    return [tag.get("name") if isinstance(tag, dict) else tag for tag in workflow.get("tags") or []]


def _workflow_summary(workflow: Any) -> dict[str, Any]:
    return {**pick(workflow, "id", "name", "active"), "nodeCount": len(workflow.get("nodes") or []),
            "tags": _tags(workflow), **pick(workflow, "createdAt", "updatedAt")}


def _workflows(arguments: Mapping[str, Any], page: Any) -> dict[str, Any]:
    workflows = [_workflow_summary(workflow) for workflow in page.get("data") or []]
    return {"total": len(workflows), "nextCursor": page.get("nextCursor"), "workflows": workflows}


def _duration_ms(execution: Any) -> int | None:
    started, stopped = execution.get("startedAt"), execution.get("stoppedAt")
    if not started or not stopped:
        return None
    return round((_epoch(stopped) - _epoch(started)) * 1000)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


EXECUTION = ("id", "workflowId", "status", "finished", "mode", "startedAt", "stoppedAt")


def _executions(arguments: Mapping[str, Any], page: Any) -> dict[str, Any]:
    executions = [{**pick(execution, *EXECUTION), "duration": _duration_ms(execution)}
                  for execution in page.get("data") or []]
    return {"total": len(executions), "nextCursor": page.get("nextCursor"), "workflowId": arguments["workflowId"],
            "executions": executions}


def _execution(arguments: Mapping[str, Any], execution: Any) -> dict[str, Any]:
    shaped = pick(execution, *EXECUTION, "retryOf", "retrySuccessId")
    if arguments["includeData"]:
        shaped["data"] = execution.get("data")
    return {"execution": shaped}


def _switched(verb: str) -> ResultShaper:
    return lambda arguments, workflow: {"workflowId": workflow.get("id", arguments["workflowId"]),
                                        "active": workflow.get("active"),
                                        "message": f"Workflow {workflow.get('name', arguments['workflowId'])} {verb}"}


def webhook_nodes(workflow: Any) -> list[dict[str, Any]]:
    """The workflow's enabled Webhook trigger nodes."""
    return [node for node in workflow.get("nodes") or []
            if isinstance(node, dict) and node.get("type") == WEBHOOK_NODE and not node.get("disabled")]


def _webhook_answer(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    """What a webhook said: "Workflow was started" when it answers at once, the workflow's result otherwise."""
    status, body = answer
    started = isinstance(body, dict) and body.get("message") == "Workflow was started"
    return {"status": "started" if started else "completed", "httpStatus": status, "data": body}


def _executed(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    shaped = _webhook_answer(arguments, answer)
    return {"workflowId": arguments["workflowId"], **shaped,
            "message": f"Workflow {arguments['workflowId']} {shaped['status']} through its webhook"}


def _tested(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    shaped = _webhook_answer(arguments, answer)
    return {"path": arguments["path"], "url": arguments["webhook_url"], "status": shaped["httpStatus"],
            "data": shaped["data"], "message": f"Webhook {arguments['path']} answered {shaped['httpStatus']}"}


# -- steps an operation declares ----------------------------------------------------------------------

async def _workflow_id(n8n: N8nHandler, values: dict[str, Any]) -> None:
    """A workflow given by name: its id (`GET /workflows?name=`)."""
    if values["workflowId"] is not None and not WORKFLOW_ID.fullmatch(values["workflowId"]):
        values["workflowId"] = await n8n.workflow_by_name(values["workflowId"])


async def _workflow_webhook(n8n: N8nHandler, values: dict[str, Any]) -> None:
    """The webhook a workflow is started through: its enabled Webhook node, while the workflow is active."""
    workflow = await n8n.api_call(GET("/workflows/{workflowId}"), values, _WORKFLOW)
    nodes = webhook_nodes(workflow)
    name = workflow.get("name", values["workflowId"])
    if not nodes:
        raise ValidationFailed(f"n8n workflow {name} has no enabled Webhook trigger: the Public API cannot start "
                               "it; give it a Webhook node", {"workflowId": values["workflowId"]})
    if not workflow.get("active"):
        raise ValidationFailed(f"n8n workflow {name} is not active: its production webhook answers only while it "
                               "is (activate it first)", {"workflowId": values["workflowId"]})
    parameters = nodes[0].get("parameters") or {}
    values.update(webhook_path=parameters.get("path") or nodes[0].get("webhookId"),
                  webhook_method=str(parameters.get("httpMethod") or "GET").upper(), webhook_test=False)
    if values["wait"]:
        values["newest_before"] = await n8n.newest_execution(values["workflowId"])


async def _test_webhook(n8n: N8nHandler, values: dict[str, Any]) -> None:
    values.update(webhook_path=values["path"], webhook_method=values["method"], webhook_test=values["test"])


def _webhooks(arguments: Mapping[str, Any], workflows: Any) -> dict[str, Any]:
    found = [{"httpMethod": str((node.get("parameters") or {}).get("httpMethod") or "GET").upper(),
              "path": (node.get("parameters") or {}).get("path"), "webhookId": node.get("webhookId"),
              "webhookDescription": node.get("notes"), "node": node.get("name"), "workflowId": workflow.get("id")}
             for workflow in workflows for node in webhook_nodes(workflow)]
    return {"total": len(found), "webhooks": found}


async def _webhook_urls(n8n: N8nHandler, values: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    for webhook in data["webhooks"]:
        webhook["url"] = n8n.webhook_url(webhook["path"] or "", test=False)
    return data


async def _the_new_execution(n8n: N8nHandler, values: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    if values["wait"]:
        data["execution"] = await n8n.follow_execution(values["workflowId"], values["newest_before"], values["wait"])
    return data


_WORKFLOW = Target("workflow", "workflowId")
_EXECUTION = Target("execution", "executionId")

N8N_OPERATIONS: tuple[N8nOperation, ...] = (
    _op("execute", ExecuteArgs, "write", "Run a workflow through its Webhook trigger (with wait: to its end)",
        label="workflow_executed", cap=300, group="workflows", aliases=("execute-workflow", "run"), target=_WORKFLOW,
        webhook=True, prepare=(_workflow_id, _workflow_webhook), shape=_executed, follow=_the_new_execution,
        slash_rest="word_and_json"),
    _op("list-workflows", ListWorkflowsArgs, "read", "Workflows, a page at a time",
        GET("/workflows", "active", "tags", "name", "projectId", "limit", "cursor"), cap=200, group="workflows",
        aliases=("list",), shape=_workflows),
    _op("get-workflow", WorkflowArgs, "read", "One workflow with its nodes", GET("/workflows/{workflowId}"), cap=250,
        group="workflows", aliases=("get",), target=_WORKFLOW, prepare=(_workflow_id,),
        shape=lambda arguments, workflow: {"workflow": {
            **pick(workflow, "id", "name", "active", "nodes", "connections", "settings"), "tags": _tags(workflow),
            **pick(workflow, "createdAt", "updatedAt")}}),
    _op("activate", ActivateArgs, "write", "Activate (publish) a workflow",
        POST("/workflows/{workflowId}/activate", "versionId"), label="workflow_activated", cap=150,
        group="workflows", target=_WORKFLOW, prepare=(_workflow_id,), shape=_switched("activated")),
    _op("deactivate", WorkflowArgs, "destructive", "Deactivate a workflow: its triggers stop",
        POST("/workflows/{workflowId}/deactivate"), label="workflow_deactivated", cap=150, group="workflows",
        target=_WORKFLOW, prepare=(_workflow_id,), shape=_switched("deactivated")),
    _op("get-execution", GetExecutionArgs, "read", "One execution (its data only when asked)",
        GET("/executions/{executionId}", "includeData"), cap=200, group="executions", target=_EXECUTION,
        shape=_execution),
    _op("list-executions", ListExecutionsArgs, "read", "Executions, newest first, a page at a time",
        GET("/executions", "workflowId", "status", "projectId", "limit", "cursor"), cap=250, group="executions",
        prepare=(_workflow_id,), shape=_executions),
    _op("retry-execution", RetryArgs, "write", "Run a failed execution again",
        POST("/executions/{executionId}/retry", "loadWorkflow"), label="execution_retried", group="executions",
        target=_EXECUTION,
        shape=lambda arguments, execution: {"originalExecutionId": arguments["executionId"],
                                            "newExecutionId": execution.get("id"),
                                            "message": f"Execution {arguments['executionId']} retried"}),
    _op("delete-execution", ExecutionArgs, "destructive", "Delete an execution and its data",
        Route("DELETE", "/executions/{executionId}"), label="execution_deleted", group="executions",
        target=_EXECUTION,
        shape=lambda arguments, execution: {"executionId": arguments["executionId"],
                                            "message": f"Execution {arguments['executionId']} deleted"}),
    _op("list-webhooks", NoArgs, "read", "The webhooks of active workflows (every page)",
        GET("/workflows", "cursor", active="true", limit="250"), cap=200, group="webhooks", aliases=("webhooks",),
        every_page=True, shape=_webhooks, follow=_webhook_urls),
    _op("test-webhook", TestWebhookArgs, "write", "Call a webhook (the editor's test URL with test) and report",
        label="webhook_tested", cap=200, group="webhooks", aliases=("test-workflow",), webhook=True,
        prepare=(_test_webhook,), shape=_tested),
    _op("health", NoArgs, "read", "Is n8n up, and does it take our API key?", cap=50, group="instance",
        aliases=("test",)),
    # What an on-call engineer reaches for next.
    _op("stop-execution", ExecutionArgs, "write", "Stop a running execution",
        POST("/executions/{executionId}/stop"), group="executions", target=_EXECUTION,
        shape=lambda arguments, execution: {"executionId": arguments["executionId"], "status": execution.get("status"),
                                            "message": f"Execution {arguments['executionId']} stopped"}),
    _op("list-failed-executions", FailedExecutionsArgs, "read", "Failed executions, newest first",
        GET("/executions", "workflowId", "limit", "cursor", status="error"), group="executions",
        prepare=(_workflow_id,), shape=_executions),
)


# -- the handler ------------------------------------------------------------------------------------------

class N8nHandler(ServiceHandler):
    service = "n8n"
    operations = OperationTable(N8N_OPERATIONS, groups=("workflows", "executions", "webhooks", "instance"))
    poll_seconds = POLL_SECONDS  # a class attribute, so a test's subclass can follow executions faster

    def __init__(self, api_url: str, api_key: str, webhook_url: str | None = None, timeout_seconds: float = 30.0,
                 webhook_timeout_seconds: float = 10.0) -> None:
        root = instance_root(api_url, API_PREFIX)
        self._api = UpstreamClient(root + API_PREFIX, {"X-N8N-API-KEY": api_key, "Accept": "application/json"},
                                   timeout_seconds)
        self._public = UpstreamClient(root, {"Accept": "application/json"}, timeout_seconds)
        # Webhooks get no API key: they are the workflows' own doors, often on another address.
        self._webhooks = UpstreamClient(instance_root(webhook_url or root, ""), {}, webhook_timeout_seconds)
        self._webhook_timeout = webhook_timeout_seconds

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        return cls(settings.setting("N8N_API_URL") or "", settings.setting("N8N_API_KEY") or "",
                   settings.setting("N8N_WEBHOOK_URL"), settings.upstream_timeout_seconds,
                   settings.n8n_webhook_timeout_ms / 1000)

    async def aclose(self) -> None:
        for client in (self._api, self._public, self._webhooks):
            await client.aclose()

    # -- executing ----------------------------------------------------------------------------------

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        declared = cast(N8nOperation, operation)  # this handler's table holds only N8nOperations
        values = args.model_dump()
        if not declared.routes and not declared.webhook:
            return await self._health_result()
        for prepare in declared.prepare:
            await prepare(self, values)
        if declared.webhook:
            answer: Any = await self.call_webhook(values)
        elif declared.every_page:
            answer = await self.every_page(choose_route(declared.routes, values), values)
        else:
            answer = await self.api_call(choose_route(declared.routes, values), values, declared.target)
        data: dict[str, Any] = {"operation": declared.label}
        data.update(declared.shape(values, answer) if declared.shape else {"response": answer})
        if declared.follow is not None:
            data = await declared.follow(self, values, data)
        return data

    async def api_call(self, route: Route, values: Mapping[str, Any], target: Target | None = None) -> Any:
        response = await send(self._api, "n8n", "N8N_API_URL", route.method, route.url_path(values),
                              params=route.query_params(values), json_body=route.json_body(values))
        _raise_for_status(response, SCOPES.get((route.method, route.path), ""), *_subject(values, target))
        return json_answer(response)

    async def every_page(self, route: Route, values: Mapping[str, Any]) -> list[Any]:
        """Every item of a list, following `nextCursor` to the last page."""
        items: list[Any] = []
        cursor = None
        while True:
            page = await self.api_call(route, {**values, "cursor": cursor})
            items += page.get("data") or []
            cursor = page.get("nextCursor")
            if not cursor:
                return items

    async def workflow_by_name(self, name: str) -> str:
        found = await self.every_page(GET("/workflows", "name", "cursor"), {"name": name})
        matches = [workflow for workflow in found if workflow.get("name") == name]
        if len(matches) == 1:
            return str(matches[0]["id"])
        if not matches:
            raise ResourceNotFound(f"n8n has no workflow with id or name {name!r}", {"kind": "workflow", "id": name})
        raise ValidationFailed(f"{len(matches)} n8n workflows are named {name!r}: give one of their ids",
                               {"kind": "workflow", "name": name, "candidates": [w["id"] for w in matches]})

    def webhook_url(self, path: str, test: bool) -> str:
        return f"{self._webhooks.display_url}/{self._webhook_path(path, test)}"

    @staticmethod
    def _webhook_path(path: str, test: bool) -> str:
        """A webhook's path may have segments (`orders/:id`), each checked as path_segment checks one."""
        segments = (path_segment("path", segment, safe=":") for segment in path.strip("/").split("/"))
        return f"/{'webhook-test' if test else 'webhook'}/{'/'.join(segments)}"

    async def call_webhook(self, values: dict[str, Any]) -> tuple[int, Any]:
        """The webhook at `webhook_path` with `webhook_method`: the data as JSON, or as the query for a GET."""
        method, test = values["webhook_method"], values["webhook_test"]
        path = self._webhook_path(values["webhook_path"], test)
        values["webhook_url"] = self.webhook_url(values["webhook_path"], test)
        data = values["data"] or {}
        query = {key: str(value) for key, value in data.items()} if method in ("GET", "HEAD") else None
        response = await send(self._webhooks, "n8n", "N8N_WEBHOOK_URL", method, path, params=query,
                              json_body=None if query is not None else data, timeout_seconds=self._webhook_timeout)
        body = json_answer(response)
        if response.status == 404:
            raise ResourceNotFound(f"n8n: no webhook {method} {values['webhook_path']} is registered"
                                   + (" (the test URL listens only while the editor waits for a call)" if test else ""),
                                   {"kind": "webhook", "id": values["webhook_path"], "upstreamStatus": 404})
        if response.status >= 300:
            message = body.get("message") if isinstance(body, dict) else str(body)[:200]
            raise ValidationFailed(f"n8n webhook {values['webhook_path']} answered {response.status}: {message}",
                                   {"upstreamStatus": response.status, "data": body})
        return response.status, body

    async def newest_execution(self, workflow_id: str) -> int:
        page = await self.api_call(GET("/executions", "workflowId", "limit"), {"workflowId": workflow_id, "limit": 1})
        newest = page.get("data") or [{}]
        return int(newest[0].get("id") or 0)

    async def follow_execution(self, workflow_id: str, newest_before: int, wait: float) -> dict[str, Any]:
        """The execution the webhook started (the workflow's first newer than `newest_before`), polled until it
        leaves new/running/waiting or `wait` seconds pass; a failed one is an error naming its failing node."""
        deadline = time.monotonic() + wait
        interval = self.poll_seconds
        listing = GET("/executions", "workflowId", "limit")
        while True:
            page = await self.api_call(listing, {"workflowId": workflow_id, "limit": 5})
            newer = [execution for execution in page.get("data") or [] if int(execution["id"]) > newest_before]
            execution = min(newer, key=lambda found: int(found["id"])) if newer else None
            if execution is not None and execution.get("status") not in STILL_GOING:
                return await self._ended(execution)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {**pick(execution, "id", "status"),
                        "message": f"still {execution.get('status') if execution else 'not listed'} after {wait:g} s"}
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 10.0)

    async def _ended(self, execution: dict[str, Any]) -> dict[str, Any]:
        summary = {**pick(execution, "id", "status", "startedAt", "stoppedAt"), "duration": _duration_ms(execution)}
        if execution.get("status") == "success":
            return summary
        detail = await self.api_call(GET("/executions/{executionId}", "includeData"),
                                     {"executionId": execution["id"], "includeData": True}, _EXECUTION)
        result = ((detail.get("data") or {}).get("resultData") or {})
        error = result.get("error") or {}
        failed_node = (error.get("node") or {}).get("name") or result.get("lastNodeExecuted")
        raise ValidationFailed(f"n8n execution {execution['id']} ended {execution.get('status')}"
                               + (f" at node {failed_node}" if failed_node else ""),
                               {**summary, "failedNode": failed_node, "error": error.get("message")})

    # -- health -------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        report, _ = await self._health()
        return report

    async def _health(self) -> tuple[HealthReport, dict[str, Any]]:
        """`/healthz` (no key), then the key against one workflow: degraded when n8n answers but refuses it."""
        started = time.perf_counter()
        details: dict[str, Any] = {"endpoint": self._public.display_url, "authenticated": False}
        try:
            alive = await send(self._public, "n8n", "N8N_API_URL", "GET", "/healthz")
            if alive.status >= 500 or alive.status == 404:
                return HealthReport("down", ms_since(started), f"/healthz answered {alive.status}"), details
            response = await send(self._api, "n8n", "N8N_API_URL", "GET", "/workflows", params={"limit": "1"},
                                  timeout_seconds=HEALTH_KEY_CHECK_SECONDS)
            _raise_for_status(response, SCOPES[("GET", "/workflows")], "workflow", "")
        except GatewayError as error:
            answered = (error.data or {}).get("upstreamStatus", 500) < 500 or isinstance(error, RateLimitExceeded)
            return HealthReport("degraded" if answered else "down", ms_since(started), error.message), details
        details["authenticated"] = True
        return HealthReport("healthy", ms_since(started), "n8n is up and takes the API key"), details

    async def _health_result(self) -> dict[str, Any]:
        return health_answer("n8n", *await self._health())


def _subject(values: Mapping[str, Any], target: Target | None) -> tuple[str, str]:
    if target is None:
        return "resource", ""
    return target.kind, str(values.get(target.argument, ""))


def _raise_for_status(response: UpstreamResponse, scope: str, kind: str, identifier: str) -> None:
    """n8n's errors as the gateway's (services.md, n8n "Errors")."""
    status = response.status
    if status < 400:
        return
    body = json_answer(response)
    message = str(body.get("message", "")) if isinstance(body, dict) else str(body)[:200]
    data: dict[str, Any] = {"service": "n8n", "upstreamStatus": status}
    if status == 401:
        raise ServiceUnavailable("n8n refused the API key: check N8N_API_KEY", data)
    if status == 403:
        raise ServiceUnavailable(f"n8n refused this call: the API key lacks the scope {scope}",
                                 {**data, "scope": scope})
    if status == 404:
        raise ResourceNotFound(f"n8n: {kind} {identifier} not found".replace("  ", " "),
                               {"kind": kind, "id": identifier, "upstreamStatus": status})
    if status == 409:
        raise Conflict(f"n8n: {message or 'conflict'}", {**data, **(body if isinstance(body, dict) else {})})
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        raise RateLimitExceeded(f"n8n rate limit: {message or 'too many requests'}", {
            "limit": None, "windowMs": None, "identifier": "n8n",
            "retryAfterMs": int(retry_after) * 1000 if retry_after.isdigit() else 60_000})
    if status >= 500:
        raise ServiceUnavailable(f"n8n failed ({status}): {message or 'server error'}", data)
    raise ValidationFailed(f"n8n rejected the request: {message or status}", data)
