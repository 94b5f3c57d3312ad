"""The GitHub handler, through the gateway over real HTTP, against a GitHub-compatible server that checks every
request against GitHub's own OpenAPI file: every operation, a personal token and an App (with keys made here, in
PKCS#1, PKCS#8 and as a deployment UI flattens them), rate limits, paging, and the bugs not to repeat."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway_core.clock import Clock, FrozenClock, system_clock
from gateway_core.handlers.github import GITHUB_OPERATIONS, GitHubHandler
from gateway_core.handlers.github_app import repaired_pem
from sandbox.contract import VendorContract, openapi_file
from sandbox.github import FakeGitHub
from tests.agent_client import ServiceClient
from tests.cli import mcp_console
from tests.servers import RunningGateway, run_gateway, serve_asgi, service_gateway, unexpected

TOKEN = "ghp-test-token-0123456789"
JANUARY = 1_767_225_600.0  # 2026-01-01T00:00:00Z: App tests run on a clock of their own, not today's


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, form: str) -> str:
    """The key as GITHUB_PRIVATE_KEY may hold it: PKCS#1, PKCS#8, or either with its newlines made spaces."""
    fmt = serialization.PrivateFormat.PKCS8 if "pkcs8" in form else serialization.PrivateFormat.TraditionalOpenSSL
    text = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
    if "flattened" in form:
        text = text.replace("\n", " ")
    if "escaped" in form:
        text = '"' + text.replace("\n", "\\n") + '"'
    return text


class QuickPollingGitHub(GitHubHandler):
    """The handler following runs without a real wait."""

    poll_seconds = 0.01


@dataclass(kw_only=True)
class GitHub(ServiceClient):
    service: str = "github"
    fake: FakeGitHub
    gateway: RunningGateway


@contextlib.asynccontextmanager
async def github_gateway(tmp_path: Path, fake: FakeGitHub | None = None, clock: Clock = system_clock,
                         **settings: Any) -> AsyncIterator[GitHub]:
    fake = fake or FakeGitHub(TOKEN)
    if not any(key.startswith(("github_app", "github_token")) for key in settings):
        settings.setdefault("github_pat", TOKEN)
    async with serve_asgi(fake.app()) as url:
        settings.setdefault("github_api_url", url)
        async with service_gateway(tmp_path / "gw.db", "github", handler_classes={"github": QuickPollingGitHub},
                                   clock=clock, **settings) as (gw, agent_token):
            yield GitHub(fake=fake, gateway=gw, url=gw.url, token=agent_token)
    assert fake.violations == [], "requests the real GitHub would not accept"


@pytest.fixture
async def github(tmp_path: Path) -> AsyncIterator[GitHub]:
    async with github_gateway(tmp_path) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def every_operation(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GitHub]:
    """One gateway and one GitHub for the table below (each case's check reads only what its call changed)."""
    async with github_gateway(tmp_path_factory.mktemp("every")) as running:
        yield running


Check = Callable[[Any, FakeGitHub], None]
# Every operation: what the agent sends, the request GitHub must receive, and what the agent gets back.
OPERATIONS: list[tuple[str, Any, tuple[str, str, dict[str, str]], Check]] = [
    ("list-repos", [], ("GET", "/user/repos", {"sort": "updated", "per_page": "30", "page": "1"}),
     lambda d, f: (d["operation"] == "list_repositories" and d["count"] == 2 and d["next_page"] is None
                   and d["repositories"][0]["default_branch"] == "trunk") or unexpected(d)),
    ("get-repo", ["acme", "web"], ("GET", "/repos/acme/web", {}),
     lambda d, f: (d["operation"] == "get_repository" and d["repository"]["full_name"] == "acme/web"
                   and d["repository"]["stargazers_count"] == 5) or unexpected(d)),
    ("list-prs", ["acme/web"], ("GET", "/repos/acme/web/pulls", {"state": "open", "per_page": "30", "page": "1"}),
     lambda d, f: (d["operation"] == "list_pull_requests" and d["pull_requests"][0]["head_ref"] == "feature-login"
                   and d["pull_requests"][0]["user"] == "octocat") or unexpected(d)),
    ("get-pr", ["acme", "web", 2], ("GET", "/repos/acme/web/pulls/2", {}),
     lambda d, f: (d["pull_request"]["head"] == {"ref": "feature-login", "sha": f.branches["acme/web"][
         "feature-login"]["sha"]} and d["pull_request"]["mergeable"] is True) or unexpected(d)),
    ("create-pr", ["acme", "web", {"title": "Try it", "head": "feature-login"}], ("POST", "/repos/acme/web/pulls", {}),
     lambda d, f: (d["operation"] == "pull_request_created" and f.pulls["acme/web"][d["pull_request"]["number"]][
         "base"]["ref"] == "trunk" and d["message"]) or unexpected(d)),
    ("merge-pr", ["acme", "web", 2], ("PUT", "/repos/acme/web/pulls/2/merge", {}),
     lambda d, f: (d == {"operation": "pull_request_merged", "owner": "acme", "repo": "web", "pull_number": 2,
                         "merged": True, "sha": d["sha"], "message": "Pull Request successfully merged"}
                   and f.pulls["acme/web"][2]["merge_method"] == "merge") or unexpected(d)),
    ("approve-pr", ["acme", "web", 2], ("POST", "/repos/acme/web/pulls/2/reviews", {}),
     lambda d, f: (d["state"] == "APPROVED" and d["review_id"]
                   and f.requests_to("POST", "/repos/acme/web/pulls/2/reviews")[-1].body == {
                       "event": "APPROVE", "body": "Approved by MCP Gateway"}) or unexpected(d)),
    ("list-issues", ["acme", "web"], ("GET", "/repos/acme/web/issues", {"per_page": "30", "page": "1"}),
     lambda d, f: ([issue["number"] for issue in d["issues"]] == [3, 1]
                   and d["issues"][0]["labels"] == ["enhancement"]) or unexpected(d)),
    ("get-issue", ["acme", "web", 1], ("GET", "/repos/acme/web/issues/1", {}),
     lambda d, f: (d["issue"]["title"] == "Login button does nothing" and d["issue"]["user"] == "octocat")
     or unexpected(d)),
    ("create-issue", ["acme", "web", {"title": "Broken footer", "labels": ["bug"]}],
     ("POST", "/repos/acme/web/issues", {}),
     lambda d, f: (d["operation"] == "issue_created"
                   and f.issues["acme/web"][d["issue"]["number"]]["labels"] == [{"name": "bug"}]) or unexpected(d)),
    ("update-issue", ["acme", "web", 1, {"title": "Login button broken"}], ("PATCH", "/repos/acme/web/issues/1", {}),
     lambda d, f: (d["issue"]["title"] == "Login button broken"
                   and f.requests_to("PATCH", "/repos/acme/web/issues/1")[-1].body == {"title": "Login button broken"})
     or unexpected(d)),
    ("close-issue", ["acme", "web", 3], ("PATCH", "/repos/acme/web/issues/3", {}),
     lambda d, f: (d["state"] == "closed" and f.requests_to("PATCH", "/repos/acme/web/issues/3")[-1].body == {
         "state": "closed", "state_reason": "completed"}) or unexpected(d)),
    ("create-comment", ["acme", "web", 1, "Looking into it"], ("POST", "/repos/acme/web/issues/1/comments", {}),
     lambda d, f: (d["comment"]["body"] == "Looking into it"
                   and f.comments[("acme/web", 1)][-1]["id"] == d["comment"]["id"]) or unexpected(d)),
    ("list-comments", ["acme", "web", 1], ("GET", "/repos/acme/web/issues/1/comments", {"per_page": "30", "page": "1"}),
     lambda d, f: (d["issue_number"] == 1 and d["count"] == len(f.comments.get(("acme/web", 1), []))) or unexpected(d)),
    ("list-branches", ["acme", "web"], ("GET", "/repos/acme/web/branches", {"per_page": "30", "page": "1"}),
     lambda d, f: (d["branches"][0] == {"name": "trunk", "protected": True,
                                        "commit_sha": f.branches["acme/web"]["trunk"]["sha"]}) or unexpected(d)),
    ("create-branch", ["acme", "web", {"name": "hotfix"}], ("POST", "/repos/acme/web/git/refs", {}),
     lambda d, f: (d["branch"] == {"name": "hotfix", "ref": "refs/heads/hotfix",
                                   "sha": f.branches["acme/web"]["trunk"]["sha"]}
                   and f.requests_to("GET", "/repos/acme/web/git/ref/heads%2Ftrunk")) or unexpected(d)),
    ("list-workflows", ["acme", "web"], ("GET", "/repos/acme/web/actions/workflows", {"per_page": "30", "page": "1"}),
     lambda d, f: (d["count"] == 1 and d["total_count"] == 1 and d["workflows"][0]["path"].endswith("ci.yml"))
     or unexpected(d)),
    ("trigger-workflow", ["acme", "web", "ci.yml"], ("POST", "/repos/acme/web/actions/workflows/ci.yml/dispatches", {}),
     lambda d, f: (d["operation"] == "workflow_triggered" and d["ref"] == "trunk" and d["run_id"] in f.runs
                   and f.requests_to("POST", "/repos/acme/web/actions/workflows/ci.yml/dispatches")[-1].body == {
                       "ref": "trunk", "return_run_details": True}) or unexpected(d)),
    ("health", [], ("GET", "/rate_limit", {}),
     lambda d, f: (d["status"] == "healthy" and d["auth_method"] == "token" and d["user"] == "deploy-bot"
                   and d["rate_limit"]["remaining"] == 4999 and d["latency"] > 0) or unexpected(d)),
    ("list-workflow-runs", ["acme", "web"], ("GET", "/repos/acme/web/actions/runs", {"per_page": "30", "page": "1"}),
     lambda d, f: [run["id"] for run in d["runs"]] == sorted(f.runs, reverse=True) or unexpected(d)),
    ("list-workflow-runs", {"owner": "acme", "repo": "web", "workflowId": 101, "status": "queued"},
     ("GET", "/repos/acme/web/actions/workflows/101/runs", {"status": "queued", "per_page": "30", "page": "1"}),
     lambda d, f: d["count"] == len([run for run in f.runs.values() if run["status"] == "queued"]) or unexpected(d)),
    ("get-rate-limit", [], ("GET", "/rate_limit", {}),
     lambda d, f: d["resources"]["core"]["limit"] == 5000 or unexpected(d)),
    ("get-checks", ["acme", "web", "feature/login"],
     ("GET", "/repos/acme/web/commits/feature%2Flogin/check-runs", {"per_page": "30", "page": "1"}),
     lambda d, f: (d["check_runs"][0]["conclusion"] == "success") or unexpected(d)),
    ("list-pr-files", ["acme", "web", 2], ("GET", "/repos/acme/web/pulls/2/files", {"per_page": "30", "page": "1"}),
     lambda d, f: [file["filename"] for file in d["files"]] == ["web/login.js", "web/login.test.js"] or unexpected(d)),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("operation", "args", "expected", "check"), OPERATIONS,
                         ids=[f"{case[0]}-{n}" for n, case in enumerate(OPERATIONS)])
async def test_every_operation_sends_the_right_request_and_answers_with_what_github_said(
    every_operation: GitHub, operation: str, args: Any, expected: tuple[str, str, dict[str, str]], check: Check
) -> None:
    github = every_operation
    data = await github.data(operation, args)
    method, path, query = expected
    sent = github.fake.requests_to(method, path)
    assert sent, f"GitHub received no {method} {path}; it received {[(r.method, r.path) for r in github.fake.requests]}"
    assert sent[-1].query == query
    assert sent[-1].authorization == f"Bearer {TOKEN}"
    assert sent[-1].headers["x-github-api-version"] == "2022-11-28"
    assert sent[-1].headers["accept"] == "application/vnd.github+json"
    check(data, github.fake)


async def test_the_actions_extras_name_the_failed_step_and_read_the_log_without_our_token(github: GitHub) -> None:
    github.fake.next_run_fails = True
    run_id = (await github.data("trigger-workflow", ["acme/web", "ci.yml"]))["run_id"]
    run = await github.data("get-workflow-run", ["acme", "web", run_id])
    jobs = await github.data("list-run-jobs", ["acme", "web", run_id])
    logs = await github.data("get-job-logs", {"owner": "acme", "repo": "web", "jobId": jobs["jobs"][0]["id"],
                                              "lines": 2})
    cancelled = await github.data("cancel-workflow-run", ["acme", "web", run_id])
    too_late = await github.error("cancel-workflow-run", ["acme", "web", run_id])
    rerun = await github.data("rerun-failed-jobs", ["acme", "web", run_id])
    assert run["run"]["id"] == run_id and run["run"]["event"] == "workflow_dispatch"
    assert jobs["jobs"][0]["failed_step"] == "Run pytest"
    assert logs["lines"] == ["FAILED tests/test_login.py::test_button - AssertionError", "Error: exit code 1"]
    assert "short-lived" not in json.dumps(logs)  # the log's address is never handed out
    assert github.fake.log_downloads and "authorization" not in github.fake.log_downloads[-1]
    assert "cancelled" in cancelled["message"] and too_late["code"] == -32008
    assert rerun["run_id"] == run_id and github.fake.runs[run_id]["run_attempt"] == 2


async def test_every_declared_route_is_in_githubs_openapi_with_its_query_parameters() -> None:
    contract = VendorContract.load("github")
    for declared in GITHUB_OPERATIONS:
        fields = set(declared.args_model.model_fields)
        for route in (*declared.routes, *([declared.app_route] if declared.app_route else [])):
            assert set(route.placeholders) <= fields, declared.name
            path = route.url_path({name: "x" for name in route.placeholders})
            declared_query = contract.query_parameters(route.method, path)
            assert declared_query is not None, f"{declared.name}: {route.method} {route.path} is not GitHub's"
            sent = {entry.partition("=")[0] for entry in route.query}
            assert sent <= declared_query, f"{declared.name}: {sent - declared_query} are not GitHub's"


def test_the_project_carries_githubs_own_openapi_file() -> None:
    carried = openapi_file("github")  # package data: no ../shared needed
    assert carried["info"]["x-source"]["repository"] == "github/rest-api-description"
    shared = Path(__file__).resolve().parents[2] / "shared" / "github" / "openapi.json"
    if shared.is_file():
        assert json.loads(shared.read_text()) == carried


async def test_owner_and_repo_may_come_as_one_argument_and_the_slash_form_takes_underscores(github: GitHub) -> None:
    shifted = await github.data("get-issue", ["acme/web", 3])
    named = await github.data("get-pr", {"owner": "acme/web", "pullNumber": 2})
    sliced = await github.slash_answer("/mcp-gh get_issue acme/web 1")
    aliased = await github.slash_answer("/mcp-github list_pull_requests acme web")
    assert shifted["issue"]["number"] == 3 and (shifted["owner"], shifted["repo"]) == ("acme", "web")
    assert named["pull_request"]["number"] == 2
    assert sliced["result"]["data"]["issue"]["title"] == "Login button does nothing"
    assert aliased["result"]["data"]["operation"] == "list_pull_requests"


async def test_short_or_wrong_arguments_are_refused_before_github_is_called(github: GitHub) -> None:
    # Upstream read a third argument that was never required: a short call crashed (-32603).
    short_pr = await github.error("create-pr", ["acme", "web"])
    short_update = await github.error("update-issue", ["acme", "web", 1])
    empty_update = await github.error("update-issue", ["acme", "web", 1, {}])
    too_many = await github.error("list-issues", ["acme", "web"], limit=101)
    bad_number = await github.error("get-issue", ["acme", "web", "one"])
    for error, field in [(short_pr, "prData"), (short_update, "updateData"), (empty_update, "updateData"),
                         (too_many, "limit"), (bad_number, "issueNumber")]:
        assert error["code"] == -32602 and field in error["message"], error
    assert not [r for r in github.fake.requests if r.path.startswith("/repos")]


async def test_an_owner_or_repo_that_is_a_path_step_is_refused_not_climbed(github: GitHub) -> None:
    """`{"owner": "..", "repo": ".."}` made list-issues read GET /issues: above the repository, with our token."""
    before = len(github.fake.requests)
    for owner, repo in ((("..", ".."), (".", "web"), ("acme", ".."))):
        refused = await github.error("list-issues", {"owner": owner, "repo": repo})
        assert refused["code"] == -32602, refused
    assert len(github.fake.requests) == before


async def test_list_issues_leaves_out_pull_requests_and_pages_on(github: GitHub) -> None:
    everything = await github.data("list-issues", ["acme", "web"], state="all", include_prs=True)
    first = await github.data("list-issues", ["acme", "api"], limit=3)
    second = await github.data("list-issues", ["acme", "api"], limit=3, page=first["next_page"])
    labelled = await github.data("list-issues", {"owner": "acme", "repo": "web", "labels": ["bug", "ui"]})
    assert [issue["number"] for issue in everything["issues"]] == [3, 2, 1]
    assert [issue["number"] for issue in first["issues"]] == [4, 3, 2] and first["next_page"] == 2
    assert [issue["number"] for issue in second["issues"]] == [1] and second["next_page"] is None
    assert labelled["count"] == 0
    assert github.fake.requests_to("GET", "/repos/acme/web/issues")[-1].query["labels"] == "bug,ui"


async def test_defaults_come_from_the_repository_never_a_hard_coded_main(github: GitHub) -> None:
    merged_api_pr = await github.data("create-pr", ["acme", "api", {"head": "main", "base": "main", "title": "x"}])
    merged = await github.data("merge-pr", ["acme", "api", merged_api_pr["pull_request"]["number"]])
    branch = await github.data("create-branch", ["acme", "web", {"name": "from-feature", "from": "feature-login"}])
    given = await github.data("create-branch", ["acme", "web", {"name": "pinned", "sha": "abc123"}])
    dispatched = await github.data("trigger-workflow", ["acme", "web", 101], ref="feature-login",
                                   inputs={"debug": True})
    assert merged["merged"] and github.fake.pulls["acme/api"][merged_api_pr["pull_request"]["number"]][
        "merge_method"] == "squash"  # the repository allows squash: the default; acme/web does not (merge)
    assert branch["branch"]["sha"] == github.fake.branches["acme/web"]["feature-login"]["sha"]
    assert given["branch"]["sha"] == "abc123" and not github.fake.requests_to("GET", "/repos/acme/web/git/ref/heads%2F")
    assert dispatched["ref"] == "feature-login"
    assert github.fake.requests_to("POST", "/repos/acme/web/actions/workflows/101/dispatches")[-1].body["inputs"] == {
        "debug": True}


async def test_trigger_workflow_finds_its_run_without_run_details_and_follows_it(tmp_path: Path) -> None:
    async with github_gateway(tmp_path, FakeGitHub(TOKEN, run_details=False)) as github:
        found = await github.data("trigger-workflow", ["acme", "web", "ci.yml"])
        followed = await github.data("trigger-workflow", ["acme", "web", "ci.yml"], wait=30)
        github.fake.next_run_fails = True
        failed = await github.error("dispatch-workflow", ["acme", "web", "ci.yml"], wait=30)
    assert found["run_id"] in github.fake.runs and found["run_url"].endswith(f"/runs/{found['run_id']}")
    assert followed["run"] == {"id": followed["run_id"], "status": "completed", "conclusion": "success",
                               "html_url": followed["html_url"]}
    assert failed["code"] == -32009 and failed["data"]["failed_step"] == "Run pytest"
    assert failed["data"]["log_tail"][-1] == "Error: exit code 1"


async def test_githubs_errors_become_the_gateways(github: GitHub) -> None:
    missing = await github.error("get-issue", ["acme", "web", 99])
    private = await github.error("get-repo", ["acme", "secret"])
    own = await github.data("create-pr", ["acme", "web", {"head": "feature-login", "title": "mine"}])
    own_review = await github.error("approve-pr", ["acme", "web", own["pull_request"]["number"]])
    moved = await github.error("merge-pr", {"owner": "acme", "repo": "web", "pullNumber": 2, "sha": "old"})
    not_allowed = await github.error("merge-pr", ["acme", "web", 2], merge_method="squash")
    exists = await github.error("create-branch", ["acme", "web", {"name": "trunk"}])
    bad_head = await github.error("create-pr", ["acme", "web", {"head": "nope"}])
    github.fake.issues_disabled.add("acme/web")
    gone = await github.error("create-issue", ["acme", "web", {"title": "x"}])
    github.fake.forbidden[("POST", "/repos/acme/web/issues/1/comments")] = "issues=write"
    forbidden = await github.error("create-comment", ["acme", "web", 1, "hi"])
    assert (missing["code"], missing["http"]) == (-32007, 404)
    assert missing["data"] == {"kind": "issue", "id": "acme/web#99", "upstreamStatus": 404}
    assert private["code"] == -32007 and private["data"]["kind"] == "repository"
    assert own_review["code"] == -32009 and own_review["data"]["errors"] == [
        "Review Can not approve your own pull request"]
    assert (moved["code"], not_allowed["code"], exists["code"]) == (-32008, -32008, -32008)
    assert bad_head["code"] == -32009 and bad_head["data"]["errors"][0]["field"] == "head"
    assert gone["code"] == -32007 and "gone" in gone["message"]
    assert forbidden["code"] == -32001 and "issues=write" in forbidden["message"]


async def test_primary_and_secondary_rate_limits_tell_the_agent_how_long_to_wait(tmp_path: Path) -> None:
    clock = FrozenClock(JANUARY)
    async with github_gateway(tmp_path, FakeGitHub(TOKEN, clock=clock), clock=clock) as github:
        github.fake.rate_limited_until = clock() + 90
        primary = await github.error("list-repos")
        github.fake.rate_limited_until = None
        github.fake.secondary_limit_seconds = 42
        secondary = await github.error("get-repo", ["acme", "web"])
        github.fake.secondary_limit_seconds = 0
        after = await github.data("get-repo", ["acme", "web"])
    assert (primary["code"], primary["http"]) == (-32005, 429)
    assert primary["data"]["retryAfterMs"] == 90_000 and primary["data"]["limit"] == 5000
    assert secondary["code"] == -32005 and secondary["data"]["retryAfterMs"] == 42_000
    assert after["repository"]["name"] == "web"


@pytest.mark.parametrize("form", ["pkcs1", "pkcs8", "pkcs1 flattened", "pkcs8 flattened", "pkcs8 escaped"])
async def test_a_github_app_signs_in_with_its_key_in_any_form_it_is_given(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, form: str
) -> None:
    clock = FrozenClock(JANUARY)
    fake = FakeGitHub(TOKEN, app_key=app_key.public_key(), clock=clock)
    async with github_gateway(tmp_path, fake, clock, github_app_id="4242", github_private_key=pem(app_key, form),
                              github_installation_id="77") as github:
        repositories = await github.data("list-repos")
        again = await github.data("get-repo", ["acme", "web"])
        health = await github.data("health")
    assert repositories["count"] == 2 and repositories["total_count"] == 2 and again["repository"]
    listed = fake.requests_to("GET", "/installation/repositories")[-1]
    assert listed.authorization == f"Bearer {next(iter(fake.installation_tokens))}"
    assert len(fake.installation_tokens) == 1 and fake.jwt_refusals == []  # one token for every call
    assert health["auth_method"] == "app" and health["app_name"] == "MCP Gateway" and health["app_id"] == 4242


async def test_the_installation_token_is_renewed_before_it_expires(tmp_path: Path, app_key: rsa.RSAPrivateKey) -> None:
    clock = FrozenClock(JANUARY)
    fake = FakeGitHub(TOKEN, app_key=app_key.public_key(), clock=clock)
    async with github_gateway(tmp_path, fake, clock, github_app_id="4242", github_private_key=pem(app_key, "pkcs1"),
                              github_installation_id="77") as github:
        await github.data("get-repo", ["acme", "web"])
        clock.advance(54 * 60)  # six minutes left: still good
        await github.data("get-repo", ["acme", "web"])
        kept = len(fake.installation_tokens)
        clock.advance(2 * 60)  # four minutes left: renewed (with a new JWT: the first one expired long ago)
        await github.data("get-repo", ["acme", "web"])
        clock.advance(61 * 60)  # the old token has expired at GitHub: the call never uses it
        await github.data("get-repo", ["acme", "web"])
    assert (kept, len(fake.installation_tokens)) == (1, 3)
    assert fake.jwt_refusals == []
    used = [r.authorization for r in fake.requests if r.path == "/repos/acme/web"]
    assert used[0] == used[1] != used[2] != used[3]


async def test_a_jwt_github_refuses_and_an_unreadable_key_are_configuration_problems(
    tmp_path: Path, app_key: rsa.RSAPrivateKey
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=1024 * 2)
    fake = FakeGitHub(TOKEN, app_key=app_key.public_key())
    async with github_gateway(tmp_path, fake, github_app_id="4242", github_private_key=pem(other_key, "pkcs8"),
                              github_installation_id="77") as github:
        refused = await github.error("list-repos")
        degraded = await github.data("health")
    async with github_gateway(tmp_path / "k", FakeGitHub(TOKEN), github_app_id="4242",
                              github_private_key="-----BEGIN PRIVATE KEY----- not a key -----END PRIVATE KEY-----",
                              github_installation_id="77") as github:
        unreadable = await github.error("list-repos")
    assert refused["code"] == -32001 and "GITHUB_APP_ID" in refused["message"]
    assert fake.jwt_refusals and degraded["status"] == "degraded"
    assert unreadable["code"] == -32001 and "GITHUB_PRIVATE_KEY" in unreadable["message"]


def test_a_private_key_is_repaired_whatever_a_deployment_did_to_it(app_key: rsa.RSAPrivateKey) -> None:
    for form in ("pkcs1", "pkcs8"):
        original = pem(app_key, form)
        for mangled in (original, pem(app_key, f"{form} flattened"), pem(app_key, f"{form} escaped"),
                        f"'{original.strip()}'"):
            assert repaired_pem(mangled) == original, (form, mangled[:40])


async def test_health_is_healthy_degraded_or_down_and_down_is_an_error(tmp_path: Path) -> None:
    async with github_gateway(tmp_path, github_pat="ghp-wrong") as github:
        degraded = await github.data("health")
        refused = await github.error("list-repos")
    assert degraded["status"] == "degraded" and "refused" in degraded["message"]
    assert refused["code"] == -32001
    handler = GitHubHandler("http://127.0.0.1:9", token=TOKEN)
    try:
        down = await handler.health()
    finally:
        await handler.aclose()
    assert down.status == "down"
    async with run_gateway(tmp_path / "down.db", extra_specs=(), github_pat=TOKEN,
                           github_api_url="http://127.0.0.1:9") as gw:
        agent_id, agent_token = await gw.add_agent()
        await gw.grant(agent_id, "github")
        error = await GitHub(fake=FakeGitHub(TOKEN), gateway=gw, url=gw.url, token=agent_token).error("health")
    assert error["code"] == -32001 and error["data"]["status"] == "down" and "<GITHUB_API_URL>" in error["message"]


async def test_without_a_token_or_a_whole_app_github_is_not_configured(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "n.db", extra_specs=(), github_app_id="4242", github_installation_id="77") as gw:
        agent_id, agent_token = await gw.add_agent()
        await gw.grant(agent_id, "github")
        error = await GitHub(fake=FakeGitHub(TOKEN), gateway=gw, url=gw.url, token=agent_token).error("list-repos")
    assert error["code"] == -32001 and error["data"]["status"] == "not_configured"
    assert error["data"]["missingSettings"] == [
        "GITHUB_PAT or GITHUB_TOKEN or GITHUB_APP_ID + GITHUB_PRIVATE_KEY + GITHUB_INSTALLATION_ID"]


async def test_unreachable_and_slow_github(tmp_path: Path) -> None:
    async with github_gateway(tmp_path, FakeGitHub(TOKEN, delay_seconds=1.0),
                              upstream_timeout_seconds=0.2) as github:
        timed_out = await github.error("get-repo", ["acme", "web"])
    assert (timed_out["code"], timed_out["http"]) == (-32006, 504)


async def test_catalog_costs_are_the_specs_per_operation_numbers(github: GitHub) -> None:
    created = (await github.call("create-pr", ["acme", "web", {"head": "feature-login"}])).json()["result"]
    listed = (await github.call("list-repos")).json()["result"]
    extra = (await github.call("get-rate-limit")).json()["result"]
    assert (created["metadata"]["tokensUsed"], created["metadata"]["cost"]) == (350, 0.00105)
    assert (listed["metadata"]["tokensUsed"], listed["metadata"]["cost"]) == (250, 0.00075)
    assert (extra["metadata"]["tokensUsed"], extra["metadata"]["cost"]) == (400, 0.0012)  # the catalog's, not 350


async def test_github_token_is_taken_when_there_is_no_pat(tmp_path: Path) -> None:
    async with github_gateway(tmp_path, github_token=TOKEN) as github:
        repository = await github.data("get-repo", ["acme", "web"])
    assert repository["repository"]["name"] == "web"
    assert github.fake.requests_to("GET", "/repos/acme/web")[-1].authorization == f"Bearer {TOKEN}"


async def test_no_secret_reaches_a_log_a_result_an_error_or_the_ledger(
    tmp_path: Path, app_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    key_text = pem(app_key, "pkcs8")
    secret_line = key_text.splitlines()[5]
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with github_gateway(tmp_path, FakeGitHub(TOKEN, app_key=app_key.public_key()), github_app_id="4242",
                                  github_private_key=key_text, github_installation_id="77") as github:
            for operation, args in [("list-repos", []), ("get-issue", ["acme", "web", 99]), ("health", []),
                                    ("create-pr", ["acme", "web", {"head": "nope"}])]:
                seen.append((await github.call(operation, args)).text)
            tokens = list(github.fake.installation_tokens)
            db = github.gateway.gateway.store.path
    seen.append((await mcp_console("calls", "export", "--format", "jsonl", "--db", db)).stdout)
    seen.append(db.read_bytes().decode("latin-1"))
    seen += [record.getMessage() for record in caplog.records]
    assert tokens and seen
    assert not [text for text in seen if secret_line in text or any(token in text for token in tokens)]
