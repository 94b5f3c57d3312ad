"""GitHub: repositories, pull requests, issues, comments, branches and Actions, against GitHub's REST API
(shared/spec/services.md "github", shared/github/openapi.json), with a personal token or as a GitHub App.

Every operation is declared once below with its arguments, risk, cost and the GitHub route it calls; what an
operation needs beyond one call (the repository's default branch, the run a dispatch started) is a step it
declares, not a branch of the executor. Plain HTTP on the gateway's pooled client, with PyJWT for the App's
JWT: measured against githubkit in bench/github_client.py (see README, "GitHub")."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Self, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway_core.clock import Clock, iso_utc, system_clock
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
from gateway_core.handlers.github_app import AppCredentials, GitHubApp, UnreadableKey
from gateway_core.handlers.rest import Route, choose_route, health_answer, json_answer, ms_since, pick, priced, send
from gateway_core.health import HealthReport
from gateway_core.operations import NoArgs, Operation, OperationArgs, OperationTable, ResultShaper, Risk, Target
from gateway_core.upstream import UpstreamClient, UpstreamResponse

GITHUB_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
POLL_SECONDS = 2.0  # first interval when following a run
RUN_SEARCH_SECONDS = 10.0  # how long a dispatch without run details looks for its run

# -- argument models ---------------------------------------------------------------------------------

LIMIT = Field(30, ge=1, le=100, description="items per page (GitHub's per_page, at most 100)")
PAGE = Field(1, ge=1, description="which page")
Direction = Literal["asc", "desc"]
RunStatus = Literal["completed", "action_required", "cancelled", "failure", "neutral", "skipped", "stale", "success",
                    "timed_out", "in_progress", "queued", "requested", "waiting", "pending"]


class _Object(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)


class ListReposArgs(OperationArgs):
    sort: Literal["created", "updated", "pushed", "full_name"] = "updated"
    limit: int = LIMIT
    page: int = PAGE


class RepoArgs(OperationArgs):
    owner: str = Field(min_length=1, description="the account or organisation (or 'owner/repo' in one)")
    repo: str = Field(min_length=1, description="the repository's name")


class RepoPageArgs(RepoArgs):
    limit: int = LIMIT
    page: int = PAGE


class ListPullsArgs(RepoArgs):
    state: Literal["open", "closed", "all"] = "open"
    head: str | None = Field(None, description="user:branch")
    base: str | None = None
    sort: Literal["created", "updated", "popularity", "long-running"] | None = None
    direction: Direction | None = None
    limit: int = LIMIT
    page: int = PAGE


class PullArgs(RepoArgs):
    pullNumber: int = Field(ge=1, description="the pull request's number")


class PullFilesArgs(PullArgs):
    limit: int = LIMIT
    page: int = PAGE


class PullRequestData(_Object):
    title: str | None = None
    head: str = Field(min_length=1, description="the branch with the changes (user:branch across forks)")
    base: str | None = Field(None, description="the branch to merge into; default: the repository's default branch")
    body: str | None = None
    draft: bool | None = None
    maintainer_can_modify: bool | None = None


class CreatePullArgs(RepoArgs):
    prData: PullRequestData


class MergeArgs(PullArgs):
    merge_method: Literal["merge", "squash", "rebase"] | None = Field(
        None, description="default: squash where the repository allows it, else what it allows")
    sha: str | None = Field(None, description="merge only if the head is still this commit")
    commit_title: str | None = None
    commit_message: str | None = None


class ApproveArgs(PullArgs):
    body: str = "Approved by MCP Gateway"


class ListIssuesArgs(RepoArgs):
    state: Literal["open", "closed", "all"] | None = None
    labels: str | list[str] | None = Field(None, description="comma-separated label names")
    assignee: str | None = None
    creator: str | None = None
    since: str | None = Field(None, description="only issues updated at or after this ISO-8601 time")
    sort: Literal["created", "updated", "comments"] | None = None
    direction: Direction | None = None
    include_prs: bool = Field(False, description="keep the pull requests GitHub lists among issues")
    limit: int = LIMIT
    page: int = PAGE


class IssueArgs(RepoArgs):
    issueNumber: int = Field(ge=1, description="the issue's (or pull request's) number")


class IssueData(_Object):
    title: str = Field(min_length=1)
    body: str | None = None
    labels: list[str] | None = None
    assignees: list[str] | None = None
    milestone: int | str | None = None
    type: str | None = None


class CreateIssueArgs(RepoArgs):
    issueData: IssueData


class IssueUpdate(_Object):
    title: str | None = None
    body: str | None = None
    state: Literal["open", "closed"] | None = None
    state_reason: Literal["completed", "not_planned", "duplicate", "reopened"] | None = None
    labels: list[str] | None = None
    assignees: list[str] | None = None
    milestone: int | str | None = None

    @model_validator(mode="after")
    def _names_something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        return self


class UpdateIssueArgs(IssueArgs):
    updateData: IssueUpdate


class CloseIssueArgs(IssueArgs):
    state_reason: Literal["completed", "not_planned", "duplicate"] = "completed"


class CommentArgs(IssueArgs):
    body: str = Field(min_length=1)


class ListCommentsArgs(IssueArgs):
    since: str | None = Field(None, description="only comments updated at or after this ISO-8601 time")
    limit: int = LIMIT
    page: int = PAGE


class ListBranchesArgs(RepoArgs):
    protected: bool | None = None
    limit: int = LIMIT
    page: int = PAGE


class BranchData(_Object):
    name: str = Field(min_length=1, description="the new branch")
    sha: str | None = Field(None, description="the commit it starts at")
    from_: str | None = Field(None, alias="from", description="the branch it starts from (default branch if unset)")


class CreateBranchArgs(RepoArgs):
    branchData: BranchData


WAIT = Field(0, ge=0, le=3600, description="seconds to follow the run until it completes")


class TriggerArgs(RepoArgs):
    workflowId: int | str = Field(description="the workflow's id or file name (ci.yml)")
    ref: str | None = Field(None, description="branch or tag; default: the repository's default branch")
    inputs: dict[str, Any] | None = None
    wait: float = WAIT

    def extra_seconds(self) -> float:
        return self.wait + RUN_SEARCH_SECONDS


class ListRunsArgs(RepoArgs):
    workflowId: int | str | None = Field(None, description="only this workflow's runs (id or file name)")
    branch: str | None = None
    status: RunStatus | None = None
    event: str | None = None
    limit: int = LIMIT
    page: int = PAGE


class RunArgs(RepoArgs):
    runId: int = Field(ge=1, description="the workflow run's id")


class RunJobsArgs(RunArgs):
    limit: int = LIMIT
    page: int = PAGE


class JobLogsArgs(RepoArgs):
    jobId: int = Field(ge=1, description="the job's id (list-run-jobs)")
    lines: int = Field(100, ge=1, le=10_000, description="how many of the last lines")


class ChecksArgs(RepoArgs):
    ref: str = Field(min_length=1, description="a commit sha, branch or tag")
    limit: int = LIMIT
    page: int = PAGE


# -- the declarations --------------------------------------------------------------------------------

Prepare = Callable[["GitHubHandler", dict[str, Any]], Awaitable[None]]
Follow = Callable[["GitHubHandler", dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class GitHubOperation(Operation):
    """`routes` (the first whose `when` is set, else the first without one); `app_route` replaces them for a
    GitHub App; `label` is `data.operation`, as the upstream gateway named it; `prepare` completes the
    arguments first (a default branch, a sha) and `follow` continues after the call (the run a dispatch
    started); `pages` marks a list that answers with `next_page`."""

    routes: tuple[Route, ...] = ()  # none: the handler answers itself (health)
    app_route: Route | None = None
    label: str = ""
    prepare: tuple[Prepare, ...] = ()
    follow: Follow | None = None
    pages: bool = False

    def parse_args(self, args: list[Any] | dict[str, Any] | None,
                   defaults: Mapping[str, Any] | None = None) -> OperationArgs:
        return Operation.parse_args(self, _owner_repo_split(self, args), defaults)


def _owner_repo_split(operation: Operation, args: list[Any] | dict[str, Any] | None) -> Any:
    """`owner/repo` given as one argument is both, and shifts the rest left (`["acme/web", 5]`)."""
    if operation.positional_fields[:2] != ["owner", "repo"]:
        return args
    if isinstance(args, list) and args and isinstance(args[0], str) and args[0].count("/") == 1:
        return [*args[0].split("/"), *args[1:]]
    if isinstance(args, dict) and isinstance(args.get("owner"), str) and "repo" not in args \
            and args["owner"].count("/") == 1:
        owner, repo = args["owner"].split("/")
        return {**args, "owner": owner, "repo": repo}
    return args


def _op(name: str, args: type[OperationArgs], risk: Risk, description: str, *routes: Route, label: str = "",
        cap: int | None = None, group: str, aliases: tuple[str, ...] = (), target: Target | None = None,
        shape: ResultShaper | None = None, app_route: Route | None = None, prepare: tuple[Prepare, ...] = (),
        follow: Follow | None = None, pages: bool = False) -> GitHubOperation:
    """`cap` is the spec's per-operation token count, priced at the catalog's rate."""
    return GitHubOperation(
        name, args, risk, description, tokens=cap, cost_usd=priced("github", cap),
        group=group, aliases=aliases, target=target, shape=shape, routes=routes, app_route=app_route,
        label=label or name.replace("-", "_"), prepare=prepare, follow=follow, pages=pages)


REPO = "/repos/{owner}/{repo}"
PAGING = ("per_page=limit", "page")


def GET(path: str, *query: str) -> Route:
    return Route("GET", path, query)


def POST(path: str, *body: str, body_from: str | None = None, **constants: Any) -> Route:
    return Route("POST", path, body=body, body_from=body_from, constants=constants)


def _login(item: Any) -> str | None:
    user = item.get("user") if isinstance(item, dict) else None
    return user.get("login") if isinstance(user, dict) else None


def _items(answer: Any, key: str) -> list[Any]:
    """A list answer, or the list under `key` of an object answer ({total_count, workflows})."""
    found = answer.get(key, []) if isinstance(answer, dict) else answer
    return found if isinstance(found, list) else []


def _listed(key: str, item: Callable[[Any], dict[str, Any]], *, under: str | None = None,
            keep: Callable[[Mapping[str, Any], Any], bool] = lambda arguments, entry: True) -> ResultShaper:
    """A list shaper: each kept entry (of the answer, or of its list `under`) as `item` makes it."""
    def shape(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
        entries = [item(entry) for entry in _items(answer, under or key) if keep(arguments, entry)]
        shaped: dict[str, Any] = {"count": len(entries), key: entries}
        if isinstance(answer, dict) and "total_count" in answer:
            shaped["total_count"] = answer["total_count"]
        return shaped
    return shape


def _one(key: str, *fields: str, **derived: Callable[[Any], Any]) -> ResultShaper:
    """An object shaper: the answer's `fields` under `key`, and `derived` values computed from it."""
    def shape(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
        return {key: {**pick(answer, *fields), **{name: make(answer) for name, make in derived.items()}}}
    return shape


def _with_message(shaper: ResultShaper, message: Callable[[Mapping[str, Any], Any], str]) -> ResultShaper:
    return lambda arguments, answer: {**shaper(arguments, answer), "message": message(arguments, answer)}


REPOSITORY = ("id", "name", "full_name", "private", "html_url", "description", "default_branch")
_repository = _one("repository", *REPOSITORY, "created_at", "updated_at", "language", "size", "stargazers_count",
                   "watchers_count", "forks_count", "open_issues_count")
_pull_summary = _listed("pull_requests", lambda pull: {
    **pick(pull, "number", "title", "state", "html_url", "created_at"), "user": _login(pull),
    "head_ref": (pull.get("head") or {}).get("ref"), "base_ref": (pull.get("base") or {}).get("ref")})
_pull_request = _one("pull_request", "number", "title", "body", "state", "html_url", "created_at", "updated_at",
                     "merged_at", "mergeable", "mergeable_state", "comments", "commits", "additions", "deletions",
                     "changed_files", user=_login, head=lambda pull: pick(pull.get("head"), "ref", "sha"),
                     base=lambda pull: pick(pull.get("base"), "ref", "sha"))


def _labels(issue: Any) -> list[Any]:
    return [label.get("name") if isinstance(label, dict) else label for label in issue.get("labels") or []]


_issue_summary = _listed(
    "issues", lambda issue: {**pick(issue, "number", "title", "state", "html_url", "created_at"),
                             "user": _login(issue), "labels": _labels(issue)},
    keep=lambda arguments, issue: bool(arguments.get("include_prs")) or "pull_request" not in issue)
_issue = _one("issue", "number", "title", "body", "state", "html_url", "created_at", "updated_at", "closed_at",
              "comments", user=_login, labels=_labels)
_comment_summary = _listed("comments", lambda comment: {
    **pick(comment, "id", "body", "created_at", "updated_at"), "user": _login(comment)})
_branches = _listed("branches", lambda branch: {
    **pick(branch, "name", "protected"), "commit_sha": (branch.get("commit") or {}).get("sha")})
_workflows = _listed("workflows", lambda workflow: pick(workflow, "id", "name", "path", "state", "created_at",
                                                         "updated_at"))
RUN = ("id", "name", "workflow_id", "status", "conclusion", "event", "head_branch", "head_sha", "run_number",
       "run_attempt", "created_at", "updated_at", "html_url")
_runs = _listed("runs", lambda run: pick(run, *RUN), under="workflow_runs")


def _failed_step(job: Any) -> str | None:
    steps = job.get("steps") or [] if isinstance(job, dict) else []
    return next((step.get("name") for step in steps if isinstance(step, dict) and step.get("conclusion") == "failure"),
                None)


_jobs = _listed("jobs", lambda job: {
    **pick(job, "id", "name", "status", "conclusion", "started_at", "completed_at", "html_url"),
    "failed_step": _failed_step(job)})


def _log_tail(arguments: Mapping[str, Any], log: Any) -> dict[str, Any]:
    lines = str(log).splitlines()[-int(arguments["lines"]):]
    return {"job_id": arguments["jobId"], "count": len(lines), "lines": lines}


_check_runs = _listed("check_runs", lambda check: pick(check, "id", "name", "status", "conclusion", "started_at",
                                                        "completed_at", "html_url"))
_files = _listed("files", lambda file: pick(file, "filename", "status", "additions", "deletions", "changes"))


def _rate_limits(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    return {"resources": answer.get("resources", {}) if isinstance(answer, dict) else {}}


# -- steps an operation declares ----------------------------------------------------------------------

async def _default_base(github: GitHubHandler, values: dict[str, Any]) -> None:
    if values["prData"]["base"] is None:
        values["prData"]["base"] = (await github.repository(values))["default_branch"]


async def _default_ref(github: GitHubHandler, values: dict[str, Any]) -> None:
    if values["ref"] is None:
        values["ref"] = (await github.repository(values))["default_branch"]


async def _allowed_merge_method(github: GitHubHandler, values: dict[str, Any]) -> None:
    if values["merge_method"] is None:
        repository = await github.repository(values)
        allowed = [method for method, setting in (("squash", "allow_squash_merge"), ("merge", "allow_merge_commit"),
                                                  ("rebase", "allow_rebase_merge")) if repository.get(setting, True)]
        values["merge_method"] = allowed[0] if allowed else "squash"


async def _start_commit(github: GitHubHandler, values: dict[str, Any]) -> None:
    """The new ref's name and the commit it starts at: the sha given, else the head of `from` (or of the
    default branch), read with `GET /repos/{owner}/{repo}/git/ref/heads/<branch>`."""
    branch = values["branchData"]
    if branch["sha"] is None:
        source = branch["from_"] or (await github.repository(values))["default_branch"]
        ref = await github.get(GET(REPO + "/git/ref/{ref}"), {**values, "ref": f"heads/{source}"},
                               Target("branch", "ref"))
        branch["sha"] = ref["object"]["sha"]
    values.update(new_ref=f"refs/heads/{branch['name']}", start_sha=branch["sha"])


async def _the_dispatched_run(github: GitHubHandler, values: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The run a dispatch started (GitHub names it where it can; otherwise it is looked for), then followed for
    `wait` seconds."""
    if data.get("run_id") is None:
        run = await github.find_dispatched_run(values)
        if run is not None:
            data.update(run_id=run["id"], run_url=run.get("url"), html_url=run.get("html_url"))
    if data.get("run_id") is None:
        data["message"] = (f"Workflow {values['workflowId']} dispatched on {values['ref']}; its run was not listed "
                           f"within {RUN_SEARCH_SECONDS:g} s: see list-workflow-runs")
    elif values["wait"]:
        data["run"] = await github.follow_run(values, int(data["run_id"]), float(values["wait"]))
    return data


def _dispatch_result(arguments: Mapping[str, Any], answer: Any) -> dict[str, Any]:
    details = answer if isinstance(answer, dict) else {}
    return {"workflow_id": arguments["workflowId"], "ref": arguments["ref"],
            "run_id": details.get("workflow_run_id"), "run_url": details.get("run_url"),
            "html_url": details.get("html_url"),
            "message": f"Workflow {arguments['workflowId']} dispatched on {arguments['ref']}"}


_PULL = Target("pull request", "pullNumber")
_ISSUE = Target("issue", "issueNumber")
_RUN = Target("workflow run", "runId")

GITHUB_OPERATIONS: tuple[GitHubOperation, ...] = (
    _op("list-repos", ListReposArgs, "read", "Repositories the credential reaches, recently updated first",
        GET("/user/repos", "sort", *PAGING), label="list_repositories", cap=250, group="repositories",
        aliases=("list-repositories",), app_route=GET("/installation/repositories", *PAGING), pages=True,
        shape=_listed("repositories", lambda repository: pick(repository, *REPOSITORY))),
    _op("get-repo", RepoArgs, "read", "One repository", GET(REPO), label="get_repository", cap=200,
        group="repositories", aliases=("get-repository",), shape=_repository),
    _op("list-prs", ListPullsArgs, "read", "A repository's pull requests",
        GET(REPO + "/pulls", "state", "head", "base", "sort", "direction", *PAGING), label="list_pull_requests",
        cap=300, group="pull requests", aliases=("list-pull-requests",), shape=_pull_summary, pages=True),
    _op("get-pr", PullArgs, "read", "One pull request", GET(REPO + "/pulls/{pullNumber}"),
        label="get_pull_request", cap=250, group="pull requests", aliases=("get-pull-request",), target=_PULL,
        shape=_pull_request),
    _op("create-pr", CreatePullArgs, "write", "Open a pull request (base: the default branch unless named)",
        POST(REPO + "/pulls", body_from="prData"), label="pull_request_created", cap=350, group="pull requests",
        aliases=("create-pull-request",), prepare=(_default_base,),
        shape=_with_message(_one("pull_request", "number", "title", "html_url", "state", "created_at"),
                            lambda arguments, answer: f"Pull request #{answer.get('number')} opened")),
    _op("merge-pr", MergeArgs, "destructive", "Merge a pull request (the method the repository allows)",
        Route("PUT", REPO + "/pulls/{pullNumber}/merge",
              body=("merge_method", "sha", "commit_title", "commit_message")),
        label="pull_request_merged", cap=300, group="pull requests", aliases=("merge-pull-request",), target=_PULL,
        prepare=(_allowed_merge_method,),
        shape=lambda arguments, answer: {"pull_number": arguments["pullNumber"], **pick(answer, "merged", "sha",
                                                                                             "message")}),
    _op("approve-pr", ApproveArgs, "write", "Approve a pull request",
        POST(REPO + "/pulls/{pullNumber}/reviews", "body", event="APPROVE"), label="pull_request_approved",
        cap=250, group="pull requests", aliases=("approve-pull-request",), target=_PULL,
        shape=lambda arguments, answer: {"pull_number": arguments["pullNumber"], "review_id": answer.get("id"),
                                         "state": answer.get("state"),
                                         "message": f"Pull request #{arguments['pullNumber']} approved"}),
    _op("list-issues", ListIssuesArgs, "read", "A repository's issues (without pull requests unless asked)",
        GET(REPO + "/issues", "state", "labels", "assignee", "creator", "since", "sort", "direction", *PAGING),
        cap=300, group="issues", shape=_issue_summary, pages=True),
    _op("get-issue", IssueArgs, "read", "One issue", GET(REPO + "/issues/{issueNumber}"), cap=250, group="issues",
        target=_ISSUE, shape=_issue),
    _op("create-issue", CreateIssueArgs, "write", "Open an issue", POST(REPO + "/issues", body_from="issueData"),
        label="issue_created", cap=350, group="issues",
        shape=_with_message(_one("issue", "number", "title", "html_url", "state", "created_at"),
                            lambda arguments, answer: f"Issue #{answer.get('number')} opened")),
    _op("update-issue", UpdateIssueArgs, "write", "Change an issue's fields (only those named)",
        Route("PATCH", REPO + "/issues/{issueNumber}", body_from="updateData"), label="issue_updated", cap=300,
        group="issues", target=_ISSUE,
        shape=_with_message(_one("issue", "number", "title", "state", "updated_at"),
                            lambda arguments, answer: f"Issue #{arguments['issueNumber']} updated")),
    _op("close-issue", CloseIssueArgs, "write", "Close an issue (completed, not_planned or duplicate)",
        Route("PATCH", REPO + "/issues/{issueNumber}", body=("state_reason",), constants={"state": "closed"}),
        label="issue_closed", cap=250, group="issues", target=_ISSUE,
        shape=lambda arguments, answer: {"issue_number": arguments["issueNumber"], "state": answer.get("state"),
                                         "state_reason": answer.get("state_reason"),
                                         "message": f"Issue #{arguments['issueNumber']} closed"}),
    _op("create-comment", CommentArgs, "write", "Comment on an issue or pull request",
        POST(REPO + "/issues/{issueNumber}/comments", "body"), label="comment_created", cap=250, group="issues",
        target=_ISSUE, shape=_with_message(_one("comment", "id", "body", "created_at", "html_url"),
                                           lambda arguments, answer: f"Comment added to #{arguments['issueNumber']}")),
    _op("list-comments", ListCommentsArgs, "read", "An issue's or pull request's comments",
        GET(REPO + "/issues/{issueNumber}/comments", "since", *PAGING), cap=250, group="issues", target=_ISSUE,
        shape=lambda arguments, answer: {"issue_number": arguments["issueNumber"],
                                         **_comment_summary(arguments, answer)}, pages=True),
    _op("list-branches", ListBranchesArgs, "read", "A repository's branches",
        GET(REPO + "/branches", "protected", *PAGING), cap=250, group="branches", shape=_branches, pages=True),
    _op("create-branch", CreateBranchArgs, "write", "Create a branch (from a sha, a branch, or the default branch)",
        POST(REPO + "/git/refs", "ref=new_ref", "sha=start_sha"), label="branch_created", cap=250,
        group="branches", prepare=(_start_commit,),
        shape=lambda arguments, answer: {
            "branch": {"name": arguments["branchData"]["name"], "ref": answer.get("ref"),
                       "sha": (answer.get("object") or {}).get("sha")},
            "message": f"Branch {arguments['branchData']['name']} created"}),
    _op("list-workflows", RepoPageArgs, "read", "A repository's Actions workflows",
        GET(REPO + "/actions/workflows", *PAGING), cap=250, group="workflows", shape=_workflows, pages=True),
    _op("trigger-workflow", TriggerArgs, "write",
        "Run a workflow (workflow_dispatch) and name its run; with wait, follow it to the end",
        POST(REPO + "/actions/workflows/{workflowId}/dispatches", "ref", "inputs", return_run_details=True),
        label="workflow_triggered", cap=300, group="workflows", aliases=("dispatch-workflow",),
        prepare=(_default_ref,), shape=_dispatch_result, follow=_the_dispatched_run),
    _op("health", NoArgs, "read", "Is GitHub up, does it take our credential, and how much rate limit is left?",
        cap=50, group="account", aliases=("test",)),
    # What an on-call engineer reaches for next.
    _op("list-workflow-runs", ListRunsArgs, "read", "Workflow runs, newest first (of one workflow, or all)",
        Route("GET", REPO + "/actions/workflows/{workflowId}/runs", ("branch", "status", "event", *PAGING),
              when="workflowId"),
        GET(REPO + "/actions/runs", "branch", "status", "event", *PAGING), group="workflows",
        shape=_runs, pages=True),
    _op("get-workflow-run", RunArgs, "read", "One workflow run", GET(REPO + "/actions/runs/{runId}"),
        group="workflows", target=_RUN, shape=_one("run", *RUN)),
    _op("list-run-jobs", RunJobsArgs, "read", "A run's jobs, each with the step that failed",
        GET(REPO + "/actions/runs/{runId}/jobs", *PAGING), group="workflows", target=_RUN, shape=_jobs, pages=True),
    _op("get-job-logs", JobLogsArgs, "read", "The last lines of a job's log",
        GET(REPO + "/actions/jobs/{jobId}/logs"), group="workflows", target=Target("job", "jobId"), shape=_log_tail),
    _op("get-checks", ChecksArgs, "read", "The check runs of a commit, branch or tag",
        GET(REPO + "/commits/{ref}/check-runs", *PAGING), group="pull requests", shape=_check_runs, pages=True),
    _op("list-pr-files", PullFilesArgs, "read", "The files a pull request changes",
        GET(REPO + "/pulls/{pullNumber}/files", *PAGING), group="pull requests", target=_PULL, shape=_files,
        pages=True),
    _op("get-rate-limit", NoArgs, "read", "GitHub's rate limits for this credential", GET("/rate_limit"),
        group="account", shape=_rate_limits),
    _op("rerun-failed-jobs", RunArgs, "write", "Re-run a run's failed jobs",
        POST(REPO + "/actions/runs/{runId}/rerun-failed-jobs"), group="workflows", target=_RUN,
        shape=lambda arguments, answer: {"run_id": arguments["runId"],
                                         "message": f"Failed jobs of run {arguments['runId']} re-run"}),
    _op("cancel-workflow-run", RunArgs, "write", "Cancel a run that has not completed",
        POST(REPO + "/actions/runs/{runId}/cancel"), group="workflows", target=_RUN,
        shape=lambda arguments, answer: {"run_id": arguments["runId"],
                                         "message": f"Run {arguments['runId']} is being cancelled"}),
)


def _epoch(text: Any) -> float:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


# -- the handler ------------------------------------------------------------------------------------------

class GitHubHandler(ServiceHandler):
    service = "github"
    operations = OperationTable(GITHUB_OPERATIONS, groups=("repositories", "pull requests", "issues", "branches",
                                                           "workflows", "account"))
    poll_seconds = POLL_SECONDS  # a class attribute, so a test's subclass can follow runs faster

    def __init__(self, api_url: str, *, token: str | None = None, app: AppCredentials | None = None,
                 timeout_seconds: float = 30.0, clock: Clock = system_clock) -> None:
        if (token is None) == (app is None):
            raise ValueError("GitHub needs a token or an App, not both")
        self._api_url = api_url.strip().rstrip("/")
        self._timeout = timeout_seconds
        self._clock = clock
        self.auth_method: Literal["token", "app"] = "app" if app else "token"
        self._token_client = self._client_with(token) if token else None
        self._app = GitHubApp(app, self._client_with, clock, self._exchange) if app else None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        """A personal token when one is set (GITHUB_PAT, else GITHUB_TOKEN), else the App."""
        token = settings.setting("GITHUB_PAT") or settings.setting("GITHUB_TOKEN")
        app = None if token else AppCredentials(settings.setting("GITHUB_APP_ID") or "",
                                                settings.setting("GITHUB_PRIVATE_KEY") or "",
                                                settings.setting("GITHUB_INSTALLATION_ID") or "")
        return cls(settings.setting("GITHUB_API_URL") or GITHUB_API_URL, token=token, app=app,
                   timeout_seconds=settings.upstream_timeout_seconds, clock=clock)

    def _client_with(self, credential: str) -> UpstreamClient:
        return UpstreamClient(self._api_url, {"Authorization": f"Bearer {credential}",
                                              "Accept": "application/vnd.github+json",
                                              "X-GitHub-Api-Version": API_VERSION}, self._timeout)

    async def aclose(self) -> None:
        if self._token_client is not None:
            await self._token_client.aclose()
        if self._app is not None:
            await self._app.aclose()

    async def _client(self, renew: bool = False) -> UpstreamClient:
        if self._app is not None:
            return await self._app.installation_client(renew)
        return cast(UpstreamClient, self._token_client)

    async def _exchange(self, jwt_client: UpstreamClient, installation_id: str) -> tuple[str, float]:
        """An installation token for the App's JWT: `POST /app/installations/{installation_id}/access_tokens`."""
        route = POST("/app/installations/{installation_id}/access_tokens")
        response = await self._send(jwt_client, route, {"installation_id": installation_id})
        _raise_for_status(response, self._clock, "installation", installation_id)
        answer = json_answer(response)
        return str(answer["token"]), _epoch(answer["expires_at"])

    # -- executing ----------------------------------------------------------------------------------

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        declared = cast(GitHubOperation, operation)  # this handler's table holds only GitHubOperations
        values = args.model_dump()
        if not declared.routes:
            return await self._health_result()
        for prepare in declared.prepare:
            await prepare(self, values)
        route = declared.app_route if declared.app_route and self.auth_method == "app" else \
            choose_route(declared.routes, values)
        response = await self.request(route, values, declared.target)
        answer = json_answer(response)
        data: dict[str, Any] = {"operation": declared.label}
        if "owner" in values:
            data.update(owner=values["owner"], repo=values["repo"])
        data.update(declared.shape(values, answer) if declared.shape else {"response": answer})
        if declared.pages:
            data["next_page"] = next_page(response.headers.get("Link", ""))
        if declared.follow is not None:
            data = await declared.follow(self, values, data)
        return data

    async def request(self, route: Route, values: Mapping[str, Any], target: Target | None) -> UpstreamResponse:
        """The route with these values, on the current credential; an App's token that GitHub refuses before
        its time is renewed once."""
        response = await self._send(await self._client(), route, values)
        if response.status == 401 and self.auth_method == "app":
            response = await self._send(await self._client(renew=True), route, values)
        kind, identifier = _subject(values, target)
        _raise_for_status(response, self._clock, kind, identifier)
        return response

    async def get(self, route: Route, values: Mapping[str, Any], target: Target | None = None) -> Any:
        return json_answer(await self.request(route, values, target))

    async def _send(self, client: UpstreamClient, route: Route, values: Mapping[str, Any]) -> UpstreamResponse:
        return await send(client, "GitHub", "GITHUB_API_URL", route.method, route.url_path(values),
                          params=route.query_params(values), json_body=route.json_body(values))

    async def repository(self, values: Mapping[str, Any]) -> dict[str, Any]:
        repository: dict[str, Any] = await self.get(GET(REPO), values)
        return repository

    async def find_dispatched_run(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The newest workflow_dispatch run of the workflow on the ref, created since the dispatch (GitHub lists it
        a moment after answering)."""
        since = self._clock() - 60  # runs are stamped by GitHub's clock, which may differ from ours by that much
        route = Route("GET", REPO + "/actions/workflows/{workflowId}/runs", ("branch=ref", "event", "per_page"))
        deadline = time.monotonic() + RUN_SEARCH_SECONDS
        interval = self.poll_seconds / 4
        while True:
            listing = await self.get(route, {**values, "event": "workflow_dispatch", "per_page": 5})
            runs = [run for run in _items(listing, "workflow_runs")
                    if run.get("created_at") and _epoch(run["created_at"]) >= since]
            if runs:
                newest: dict[str, Any] = max(runs, key=lambda run: (run["created_at"], run.get("id") or 0))
                return newest
            if time.monotonic() + interval > deadline:
                return None
            await asyncio.sleep(interval)
            interval = min(interval * 2, 2.0)

    async def follow_run(self, values: Mapping[str, Any], run_id: int, wait: float) -> dict[str, Any]:
        """Polls the run until it completes or `wait` seconds pass; a run that did not succeed is an error naming
        its failed job and step, with the last lines of that job's log."""
        deadline = time.monotonic() + wait
        interval = self.poll_seconds
        run_values = {**values, "runId": run_id}
        while True:
            run = await self.get(GET(REPO + "/actions/runs/{runId}"), run_values, _RUN)
            summary = pick(run, "id", "status", "conclusion", "html_url")
            if run.get("status") == "completed":
                if run.get("conclusion") in ("success", "skipped", "neutral"):
                    return summary
                raise ValidationFailed(f"GitHub workflow run {run_id} ended {run.get('conclusion')}",
                                       {**summary, **await self._failure(run_values)})
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return {**summary, "message": f"still {run.get('status')} after {wait:g} s"}
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 10.0)

    async def _failure(self, run_values: Mapping[str, Any]) -> dict[str, Any]:
        jobs = _items(await self.get(GET(REPO + "/actions/runs/{runId}/jobs"), run_values, _RUN), "jobs")
        failed = next((job for job in jobs if job.get("conclusion") == "failure"), None)
        if failed is None:
            return {}
        log = await self.get(GET(REPO + "/actions/jobs/{jobId}/logs"), {**run_values, "jobId": failed["id"]})
        return {"failed_job": failed.get("name"), "failed_step": _failed_step(failed),
                "log_tail": str(log).splitlines()[-20:]}

    # -- health -------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        report, _ = await self._health()
        return report

    async def _health(self) -> tuple[HealthReport, dict[str, Any]]:
        started = time.perf_counter()
        details: dict[str, Any] = {"auth_method": self.auth_method}
        try:
            if self._token_client is not None:
                user = await self.get(GET("/user"), {})
                details["user"] = user.get("login")
                who = f"as {details['user']}"
            else:
                github_app = cast(GitHubApp, self._app)
                response = await self._send(await github_app.jwt_client(), GET("/app"), {})
                _raise_for_status(response, self._clock, "app", github_app.credentials.app_id)
                app = json_answer(response)
                details.update(app_name=app.get("name"), app_id=app.get("id"))
                await self._client()  # the installation token: exchanged when due
                who = f"as the App {details['app_name']}"
            core = (await self.get(GET("/rate_limit"), {})).get("resources", {}).get("core", {})
        except GatewayError as error:
            # Down when GitHub cannot be reached or fails; degraded when it answers but refuses us.
            answered = (error.data or {}).get("upstreamStatus", 500) < 500
            refused = answered or isinstance(error, RateLimitExceeded | UnreadableKey)
            return HealthReport("degraded" if refused else "down", ms_since(started), error.message), details
        details["rate_limit"] = {"remaining": core.get("remaining"), "reset": core.get("reset")}
        message = f"GitHub answers {who}; {core.get('remaining')} calls left until {iso_utc(core.get('reset', 0))}"
        return HealthReport("healthy", ms_since(started), message), details

    async def _health_result(self) -> dict[str, Any]:
        return health_answer("GitHub", *await self._health())


_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


def next_page(link: str) -> int | None:
    """The page after this one, from GitHub's `Link` header; None on the last page."""
    match = _LINK.search(link)
    page = re.search(r"[?&]page=(\d+)", match[1]) if match else None
    return int(page[1]) if page else None


def _subject(values: Mapping[str, Any], target: Target | None) -> tuple[str, str]:
    """What a 404 is about: the operation's target in its repository, else the repository."""
    repository = f"{values['owner']}/{values['repo']}" if "owner" in values else ""
    if target is not None and values.get(target.argument) is not None:
        return target.kind, f"{repository}#{values[target.argument]}" if repository else str(values[target.argument])
    return ("repository", repository) if repository else ("resource", "")


def _message(response: UpstreamResponse) -> tuple[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200], None
    if not isinstance(payload, dict):
        return "", None
    return str(payload.get("message", "")), payload.get("errors")


def _retry_after_ms(response: UpstreamResponse, clock: Clock) -> int | None:
    """How long GitHub asks us to wait: `retry-after` (seconds), or until `x-ratelimit-reset` when nothing
    is left; None when this is no rate limit."""
    headers = response.headers
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        return int(retry_after) * 1000
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
        return max(0, round((int(headers["x-ratelimit-reset"]) - clock()) * 1000))
    return None


def _raise_for_status(response: UpstreamResponse, clock: Clock, kind: str, identifier: str) -> None:
    """GitHub's errors as the gateway's (services.md, github "Errors")."""
    status = response.status
    if status < 400:
        return
    message, errors = _message(response)
    data: dict[str, Any] = {"service": "github", "upstreamStatus": status}
    if status in (403, 429):
        retry_ms = _retry_after_ms(response, clock)
        if retry_ms is None and (status == 429 or "secondary rate limit" in message.lower()):
            retry_ms = 60_000  # GitHub's advice when it names no time: wait at least a minute
        if retry_ms is not None:
            limit = response.headers.get("x-ratelimit-limit")
            raise RateLimitExceeded(f"GitHub rate limit: {message or 'too many requests'}", {
                "limit": int(limit) if limit and limit.isdigit() else None, "windowMs": None,
                "identifier": f"github:{response.headers.get('x-ratelimit-resource', 'core')}",
                "retryAfterMs": retry_ms})
    if status == 401:
        raise ServiceUnavailable("GitHub refused the credential: check GITHUB_PAT / GITHUB_TOKEN, or the App's "
                                 "GITHUB_APP_ID, GITHUB_PRIVATE_KEY and GITHUB_INSTALLATION_ID", data)
    if status == 403:
        needed = response.headers.get("x-accepted-github-permissions")
        raise ServiceUnavailable(f"GitHub refused this call: {message or 'forbidden'}"
                                 + (f" (the credential needs {needed})" if needed else ""),
                                 {**data, "neededPermissions": needed})
    if status in (404, 410):
        gone = "is gone" if status == 410 else "not found"
        raise ResourceNotFound(f"GitHub: {kind} {identifier} {gone}".replace("  ", " "),
                               {"kind": kind, "id": identifier, "upstreamStatus": status})
    if status in (405, 409) or (status == 422 and message == "Reference already exists"):
        raise Conflict(f"GitHub: {message or 'conflict'}", {**data, "kind": kind, "id": identifier})
    if status >= 500:
        raise ServiceUnavailable(f"GitHub failed ({status}): {message or 'server error'}", data)
    raise ValidationFailed(f"GitHub rejected the request: {message or status}", {**data, "errors": errors})
