"""A GitHub-compatible server for the tests: the REST routes the github handler uses, in the shapes of GitHub's
own OpenAPI file, with state that behaves (issue and pull request numbers shared, pull requests listed among
issues, refs, Actions runs that move on each time they are read) and GitHub's ways of refusing: a bad token,
an App's JWT outside its times, a missing permission, primary and secondary rate limits. Every API request is
checked against `sandbox/openapi/github.json` (`sandbox/contract.py`)."""

from __future__ import annotations

import functools
import hashlib
import itertools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from sandbox.contract import VendorContract
from sandbox.stand_in import Call, StandIn

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

CREATED = "2026-01-05T10:00:00Z"
NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
TOKEN_SECONDS = 3600  # what GitHub gives an installation token


def _sha(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status, headers=headers)


class FakeGitHub(StandIn):
    """`token` is the personal token it takes; an App is `app_id` with the public half of its key and one
    installation. `clock` is what JWT times, token expiry and rate-limit resets are read against."""

    def __init__(self, token: str = "ghp-test-token", *, app_id: str = "4242", app_key: PublicKeyTypes | None = None,
                 installation_id: str = "77", clock: Callable[[], float] = time.time, run_details: bool = True,
                 contract: VendorContract | None = None, delay_seconds: float = 0.0) -> None:
        super().__init__(contract or functools.partial(VendorContract.load, "github"), "", delay_seconds)
        self.token = token
        self.app_id = app_id
        self.app_key = app_key
        self.installation_id = installation_id
        self.clock = clock
        self.run_details = run_details  # False: a dispatch answers 204 and names no run (GHES, older servers)
        self.installation_tokens: dict[str, float] = {}  # token → when it expires
        self.jwt_refusals: list[str] = []
        self.rate_limited_until: float | None = None  # primary: nothing left until then
        self.secondary_limit_seconds = 0  # secondary: retry-after this many seconds, while > 0
        self.forbidden: dict[tuple[str, str], str] = {}  # (method, path) → the permission it needs
        self.next_run_fails = False
        self.log_downloads: list[dict[str, str]] = []  # the headers each log download came with
        self._ids = itertools.count(1000)
        self.repos: dict[str, dict[str, Any]] = {
            "acme/web": self._repository("acme", "web", 1, "trunk", squash=False),
            "acme/api": self._repository("acme", "api", 2, "main", squash=True),
        }
        self.branches: dict[str, dict[str, dict[str, Any]]] = {
            "acme/web": {"trunk": {"sha": _sha("trunk"), "protected": True},
                         "feature-login": {"sha": _sha("feature-login"), "protected": False}},
            "acme/api": {"main": {"sha": _sha("main"), "protected": True}},
        }
        self.issues: dict[str, dict[int, dict[str, Any]]] = {"acme/web": {}, "acme/api": {}}
        self.comments: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.pulls: dict[str, dict[int, dict[str, Any]]] = {"acme/web": {}, "acme/api": {}}
        self.issues_disabled: set[str] = set()
        self._issue("acme/web", "Login button does nothing", labels=["bug"])
        self._pull("acme/web", "Fix the login button", "feature-login", "trunk", author="octocat")
        self._issue("acme/web", "Dark mode", labels=["enhancement"])
        for n in range(4):
            self._issue("acme/api", f"Flaky test {n}", labels=["ci"])
        self.workflows: dict[str, list[dict[str, Any]]] = {
            "acme/web": [{"id": 101, "node_id": "W_101", "name": "CI", "path": ".github/workflows/ci.yml",
                          "state": "active", "created_at": CREATED, "updated_at": CREATED,
                          "url": "https://api.github.com/repos/acme/web/actions/workflows/101",
                          "html_url": "https://github.com/acme/web/actions/workflows/ci.yml",
                          "badge_url": "https://github.com/acme/web/workflows/CI/badge.svg"}],
            "acme/api": [],
        }
        self.runs: dict[int, dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self._declare_routes()

    # -- state ------------------------------------------------------------------------------------

    @staticmethod
    def _repository(owner: str, name: str, number: int, default_branch: str, squash: bool) -> dict[str, Any]:
        full = f"{owner}/{name}"
        return {"id": number, "node_id": f"R_{number}", "name": name, "full_name": full, "private": number == 1,
                "owner": {"login": owner, "id": 9}, "html_url": f"https://github.com/{full}",
                "description": f"the {name}", "fork": False, "url": f"https://api.github.com/repos/{full}",
                "default_branch": default_branch, "created_at": CREATED, "updated_at": CREATED,
                "pushed_at": CREATED, "language": "Python", "size": 1234, "stargazers_count": 5,
                "watchers_count": 5, "forks_count": 1, "open_issues_count": 3, "allow_squash_merge": squash,
                "allow_merge_commit": True, "allow_rebase_merge": True}

    def _number(self, repo: str) -> int:
        return len(self.issues[repo]) + 1

    def _issue(self, repo: str, title: str, *, labels: list[str] | None = None, body: str | None = None,
               user: str = "octocat", pull: bool = False) -> dict[str, Any]:
        number = self._number(repo)
        issue: dict[str, Any] = {
            "id": 5000 + number, "number": number, "title": title, "body": body, "state": "open",
            "state_reason": None, "html_url": f"https://github.com/{repo}/{'pull' if pull else 'issues'}/{number}",
            "url": f"https://api.github.com/repos/{repo}/issues/{number}", "user": {"login": user, "id": 1},
            "labels": [{"name": label} for label in labels or []], "assignees": [], "milestone": None,
            "comments": 0, "created_at": _iso(self.clock()), "updated_at": _iso(self.clock()), "closed_at": None}
        if pull:
            issue["pull_request"] = {"url": f"https://api.github.com/repos/{repo}/pulls/{number}"}
        self.issues[repo][number] = issue
        return issue

    def _pull(self, repo: str, title: str, head: str, base: str, *, author: str, body: str | None = None,
              draft: bool = False) -> dict[str, Any]:
        issue = self._issue(repo, title, body=body, user=author, pull=True)
        pull = {"id": 9000 + issue["number"], "number": issue["number"], "title": title, "body": body,
                "state": "open", "html_url": issue["html_url"], "user": issue["user"], "draft": draft,
                "created_at": issue["created_at"], "updated_at": issue["updated_at"], "merged_at": None,
                "merged": False, "mergeable": True, "mergeable_state": "clean", "comments": 0, "commits": 1,
                "additions": 10, "deletions": 2, "changed_files": 2,
                "head": {"ref": head, "sha": self.branches[repo][head]["sha"]},
                "base": {"ref": base, "sha": self.branches[repo][base]["sha"]}}
        self.pulls[repo][issue["number"]] = pull
        return pull

    def _run(self, repo: str, workflow: dict[str, Any], ref: str) -> dict[str, Any]:
        run_id = next(self._ids)
        job_id = next(self._ids)
        fails = self.next_run_fails
        self.next_run_fails = False
        run = {"id": run_id, "name": workflow["name"], "workflow_id": workflow["id"], "status": "queued",
               "conclusion": None, "event": "workflow_dispatch", "head_branch": ref,
               "head_sha": self.branches[repo].get(ref, {}).get("sha", _sha(ref)), "run_number": run_id - 999,
               "run_attempt": 1, "created_at": _iso(self.clock()), "updated_at": _iso(self.clock()),
               "url": f"https://api.github.com/repos/{repo}/actions/runs/{run_id}",
               "html_url": f"https://github.com/{repo}/actions/runs/{run_id}", "repo": repo,
               "fate": "failure" if fails else "success", "reads": 0}
        self.runs[run_id] = run
        self.jobs[job_id] = {
            "id": job_id, "run_id": run_id, "name": "test", "status": "queued", "conclusion": None,
            "started_at": run["created_at"], "completed_at": None,
            "html_url": f"https://github.com/{repo}/actions/runs/{run_id}/job/{job_id}",
            "steps": [{"name": "Set up job", "status": "completed", "conclusion": "success", "number": 1},
                      {"name": "Run pytest", "status": "completed", "conclusion": "failure" if fails else "success",
                       "number": 2}],
            "log": "\n".join([f"line {n}" for n in range(1, 41)]
                             + (["FAILED tests/test_login.py::test_button - AssertionError", "Error: exit code 1"]
                                if fails else ["40 passed"]))}
        return run

    def _advance(self, run: dict[str, Any]) -> None:
        """A run moves on each time it is read: queued, in progress, then completed with its fate."""
        run["reads"] += 1
        if run["status"] == "queued":
            run["status"] = "in_progress"
        elif run["status"] == "in_progress" and run["reads"] >= 3:
            run.update(status="completed", conclusion=run["fate"])
            for job in self.jobs.values():
                if job["run_id"] == run["id"]:
                    job.update(status="completed", conclusion=run["fate"], completed_at=_iso(self.clock()))

    # -- refusals ---------------------------------------------------------------------------------

    def _rate_headers(self) -> dict[str, str]:
        limited = self.rate_limited_until is not None and self.clock() < self.rate_limited_until
        reset = self.rate_limited_until if limited and self.rate_limited_until else self.clock() + 3600
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0" if limited else "4999",
                "x-ratelimit-reset": str(int(reset)), "x-ratelimit-resource": "core"}

    async def gate(self, call: Call) -> Response | None:
        request = call.request
        if request.path.startswith("/app"):
            return self._check_jwt(request.authorization or "")
        if not self._token_accepted(request.authorization or ""):
            return _json({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, 401)
        if self.secondary_limit_seconds:
            return _json({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
                                     "you try again."}, 403, {"retry-after": str(self.secondary_limit_seconds)})
        if request.path != "/rate_limit" and self._rate_headers()["x-ratelimit-remaining"] == "0":
            return _json({"message": "API rate limit exceeded for user ID 1."}, 403, self._rate_headers())
        needed = self.forbidden.get((request.method, request.path))
        if needed:
            return _json({"message": "Resource not accessible by integration"}, 403,
                         {"x-accepted-github-permissions": needed})
        return None

    def _token_accepted(self, authorization: str) -> bool:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return False
        expires = self.installation_tokens.get(credential)
        return credential == self.token or (expires is not None and self.clock() < expires)

    def _check_jwt(self, authorization: str) -> Response | None:
        """An App's JWT: RS256 by the App's key, issued by its id, at most 10 minutes long, in force now."""
        import jwt

        refused = _json({"message": "A JSON web token could not be decoded",
                         "documentation_url": "https://docs.github.com/rest"}, 401)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or self.app_key is None:
            self.jwt_refusals.append("no JWT")
            return refused
        try:
            claims = jwt.decode(token, self.app_key, algorithms=["RS256"],  # type: ignore[arg-type]
                                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidTokenError as exc:
            self.jwt_refusals.append(f"undecodable: {exc}")
            return refused
        now = self.clock()
        problems = [problem for problem, bad in [
            ("iss is not the App's id", str(claims.get("iss")) != self.app_id),
            ("iat is in the future", claims.get("iat", now + 1) > now + 1),
            ("exp has passed", claims.get("exp", 0) <= now),
            ("exp is more than 10 minutes ahead", claims.get("exp", 0) > now + 600),
        ] if bad]
        if problems:
            self.jwt_refusals.append("; ".join(problems))
            return _json({"message": f"'Expiration time' claim ('exp') {problems[0]}"}, 401)
        return None

    def missing(self, call: Call) -> Response:
        return _json(NOT_FOUND, 404)

    # -- routes ---------------------------------------------------------------------------------------

    def _page(self, call: Call, items: list[Any], wrap: Callable[[list[Any]], Any] | None = None) -> Response:
        per_page = int(call.query.get("per_page", 30))
        page = int(call.query.get("page", 1))
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = self._rate_headers()
        if page * per_page < len(items):
            query = {**call.query, "per_page": str(per_page), "page": str(page + 1)}
            last = {**query, "page": str((len(items) + per_page - 1) // per_page)}
            url = f"https://api.github.com{call.request.path}"
            headers["link"] = f'<{url}?{urlencode(query)}>; rel="next", <{url}?{urlencode(last)}>; rel="last"'
        return _json(wrap(chunk) if wrap else chunk, headers=headers)

    def _repo_of(self, call: Call) -> str | None:
        name = f"{call.params['owner']}/{call.params['repo']}"
        return name if name in self.repos else None

    def _declare_routes(self) -> None:
        route = self.route

        @route("GET", "/user")
        async def user(call: Call) -> Response:
            return _json({"login": "deploy-bot", "id": 1, "type": "User"}, headers=self._rate_headers())

        @route("GET", "/app")
        async def app(call: Call) -> Response:
            return _json({"id": int(self.app_id), "slug": "mcp-gateway", "name": "MCP Gateway"})

        @route("POST", "/app/installations/{installation_id}/access_tokens")
        async def access_token(call: Call) -> Response:
            if call.params["installation_id"] != self.installation_id:
                return _json(NOT_FOUND, 404)
            token = f"ghs_{next(self._ids)}installation"
            expires = self.clock() + TOKEN_SECONDS
            self.installation_tokens[token] = expires
            return _json({"token": token, "expires_at": _iso(expires), "permissions": {"issues": "write"},
                          "repository_selection": "selected"}, 201)

        @route("GET", "/installation/repositories")
        async def installation_repositories(call: Call) -> Response:
            return self._page(call, list(self.repos.values()),
                              lambda chunk: {"total_count": len(self.repos), "repositories": chunk})

        @route("GET", "/rate_limit")
        async def rate_limit(call: Call) -> Response:
            headers = self._rate_headers()
            core = {"limit": 5000, "remaining": int(headers["x-ratelimit-remaining"]),
                    "reset": int(headers["x-ratelimit-reset"]), "used": 1}
            return _json({"resources": {"core": core, "search": {**core, "limit": 30}}, "rate": core})

        @route("GET", "/user/repos")
        async def user_repos(call: Call) -> Response:
            return self._page(call, list(self.repos.values()))

        @route("GET", "/repos/{owner}/{repo}")
        async def repository(call: Call) -> Response:
            repo = self._repo_of(call)
            return _json(self.repos[repo], headers=self._rate_headers()) if repo else self.missing(call)

        @route("GET", "/repos/{owner}/{repo}/pulls")
        async def pulls(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            state = call.query.get("state", "open")
            return self._page(call, [pull for pull in self.pulls[repo].values()
                                     if state == "all" or pull["state"] == state])

        @route("POST", "/repos/{owner}/{repo}/pulls")
        async def create_pull(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            body = call.body
            if body["head"] not in self.branches[repo] or body["base"] not in self.branches[repo]:
                return _json({"message": "Validation Failed", "errors": [
                    {"resource": "PullRequest", "field": "head" if body["head"] not in self.branches[repo] else "base",
                     "code": "invalid"}]}, 422)
            pull = self._pull(repo, body.get("title") or body["head"], body["head"], body["base"],
                              author="deploy-bot", body=body.get("body"), draft=body.get("draft", False))
            return _json(pull, 201)

        @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
        async def pull(call: Call) -> Response:
            repo = self._repo_of(call)
            found = self.pulls[repo].get(int(call.params["pull_number"])) if repo else None
            return _json(found) if found else self.missing(call)

        @route("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge")
        async def merge(call: Call) -> Response:
            repo = self._repo_of(call)
            found = self.pulls[repo].get(int(call.params["pull_number"])) if repo else None
            if repo is None or found is None:
                return self.missing(call)
            body = call.body or {}
            method = body.get("merge_method", "merge")
            allowed = {"merge": "allow_merge_commit", "squash": "allow_squash_merge", "rebase": "allow_rebase_merge"}
            if found["merged"] or not self.repos[repo][allowed[method]]:
                reason = "Pull Request is not mergeable" if found["merged"] else f"{method} merges are not allowed"
                return _json({"message": reason}, 405)
            if body.get("sha") and body["sha"] != found["head"]["sha"]:
                return _json({"message": "Head branch was modified. Review and try the merge again."}, 409)
            sha = _sha(f"merge-{found['number']}")
            found.update(state="closed", merged=True, merged_at=_iso(self.clock()), merge_method=method)
            self.issues[repo][found["number"]]["state"] = "closed"
            return _json({"sha": sha, "merged": True, "message": "Pull Request successfully merged"})

        @route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
        async def review(call: Call) -> Response:
            repo = self._repo_of(call)
            found = self.pulls[repo].get(int(call.params["pull_number"])) if repo else None
            if found is None:
                return self.missing(call)
            if found["user"]["login"] == "deploy-bot":
                return _json({"message": "Unprocessable Entity",
                              "errors": ["Review Can not approve your own pull request"]}, 422)
            state = "APPROVED" if call.body["event"] == "APPROVE" else "COMMENTED"
            return _json({"id": next(self._ids), "state": state, "body": call.body.get("body", ""),
                          "user": {"login": "deploy-bot"}})

        @route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files")
        async def pull_files(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None or int(call.params["pull_number"]) not in self.pulls[repo]:
                return self.missing(call)
            return self._page(call, [{"sha": _sha("a"), "filename": "web/login.js", "status": "modified",
                                      "additions": 8, "deletions": 2, "changes": 10},
                                     {"sha": _sha("b"), "filename": "web/login.test.js", "status": "added",
                                      "additions": 2, "deletions": 0, "changes": 2}])

        @route("GET", "/repos/{owner}/{repo}/issues")
        async def issues(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            state = call.query.get("state", "open")
            labels = set(filter(None, call.query.get("labels", "").split(",")))
            found = [issue for issue in sorted(self.issues[repo].values(), key=lambda issue: -issue["number"])
                     if (state == "all" or issue["state"] == state)
                     and labels <= {label["name"] for label in issue["labels"]}]
            return self._page(call, found)

        @route("POST", "/repos/{owner}/{repo}/issues")
        async def create_issue(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            if repo in self.issues_disabled:
                return _json({"message": "Issues are disabled for this repo"}, 410)
            issue = self._issue(repo, str(call.body["title"]), labels=call.body.get("labels"),
                                body=call.body.get("body"), user="deploy-bot")
            return _json(issue, 201)

        @route("GET", "/repos/{owner}/{repo}/issues/{issue_number}")
        async def issue(call: Call) -> Response:
            repo = self._repo_of(call)
            found = self.issues[repo].get(int(call.params["issue_number"])) if repo else None
            return _json(found) if found else self.missing(call)

        @route("PATCH", "/repos/{owner}/{repo}/issues/{issue_number}")
        async def update_issue(call: Call) -> Response:
            repo = self._repo_of(call)
            found = self.issues[repo].get(int(call.params["issue_number"])) if repo else None
            if found is None:
                return self.missing(call)
            changes = dict(call.body or {})
            if "labels" in changes:
                changes["labels"] = [{"name": label} for label in changes["labels"]]
            found.update(changes, updated_at=_iso(self.clock()))
            if changes.get("state") == "closed":
                found["closed_at"] = _iso(self.clock())
            return _json(found)

        @route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
        async def comments(call: Call) -> Response:
            repo = self._repo_of(call)
            number = int(call.params["issue_number"])
            if repo is None or number not in self.issues[repo]:
                return self.missing(call)
            return self._page(call, self.comments.get((repo, number), []))

        @route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
        async def comment(call: Call) -> Response:
            repo = self._repo_of(call)
            number = int(call.params["issue_number"])
            if repo is None or number not in self.issues[repo]:
                return self.missing(call)
            comment_id = next(self._ids)
            made = {"id": comment_id, "body": call.body["body"], "user": {"login": "deploy-bot"},
                    "created_at": _iso(self.clock()), "updated_at": _iso(self.clock()),
                    "html_url": f"https://github.com/{repo}/issues/{number}#issuecomment-{comment_id}"}
            self.comments.setdefault((repo, number), []).append(made)
            self.issues[repo][number]["comments"] += 1
            return _json(made, 201)

        @route("GET", "/repos/{owner}/{repo}/branches")
        async def branches(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            wanted = call.query.get("protected")
            return self._page(call, [{"name": name, "protected": branch["protected"],
                                      "commit": {"sha": branch["sha"]}}
                                     for name, branch in self.branches[repo].items()
                                     if wanted is None or str(branch["protected"]).lower() == wanted])

        @route("GET", "/repos/{owner}/{repo}/git/ref/{ref}")
        async def git_ref(call: Call) -> Response:
            repo = self._repo_of(call)
            kind, _, name = call.params["ref"].partition("/")
            branch = self.branches[repo].get(name) if repo and kind == "heads" else None
            if branch is None:
                return self.missing(call)
            return _json({"ref": f"refs/heads/{name}", "object": {"sha": branch["sha"], "type": "commit"}})

        @route("POST", "/repos/{owner}/{repo}/git/refs")
        async def create_ref(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            name = str(call.body["ref"]).removeprefix("refs/heads/")
            if name in self.branches[repo]:
                return _json({"message": "Reference already exists"}, 422)
            self.branches[repo][name] = {"sha": call.body["sha"], "protected": False}
            return _json({"ref": call.body["ref"], "object": {"sha": call.body["sha"], "type": "commit"}}, 201)

        @route("GET", "/repos/{owner}/{repo}/actions/workflows")
        async def workflows(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            return self._page(call, self.workflows[repo],
                              lambda chunk: {"total_count": len(self.workflows[repo]), "workflows": chunk})

        def workflow_of(repo: str, workflow_id: str) -> dict[str, Any] | None:
            return next((workflow for workflow in self.workflows[repo]
                         if workflow_id in (str(workflow["id"]), workflow["path"].rsplit("/", 1)[-1])), None)

        @route("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches")
        async def dispatch(call: Call) -> Response:
            repo = self._repo_of(call)
            workflow = workflow_of(repo, call.params["workflow_id"]) if repo else None
            if repo is None or workflow is None:
                return self.missing(call)
            if call.body["ref"] not in self.branches[repo]:
                return _json({"message": f"No ref found for: {call.body['ref']}"}, 422)
            run = self._run(repo, workflow, call.body["ref"])
            if not (self.run_details and call.body.get("return_run_details")):
                return Response(status_code=204)
            return _json({"workflow_run_id": run["id"], "run_url": run["url"], "html_url": run["html_url"]})

        def runs_of(call: Call, workflow: dict[str, Any] | None) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            wanted = {key: call.query[key] for key in ("branch", "event", "status") if key in call.query}
            found = [self._public(run) for run in sorted(self.runs.values(), key=lambda run: -run["id"])
                     if run["repo"] == repo and (workflow is None or run["workflow_id"] == workflow["id"])
                     and all(str(run["head_branch" if key == "branch" else key]) == value
                             for key, value in wanted.items())]
            return self._page(call, found, lambda chunk: {"total_count": len(found), "workflow_runs": chunk})

        @route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs")
        async def workflow_runs(call: Call) -> Response:
            repo = self._repo_of(call)
            workflow = workflow_of(repo, call.params["workflow_id"]) if repo else None
            return runs_of(call, workflow) if workflow else self.missing(call)

        @route("GET", "/repos/{owner}/{repo}/actions/runs")
        async def all_runs(call: Call) -> Response:
            return runs_of(call, None)

        def run_of(call: Call) -> dict[str, Any] | None:
            run = self.runs.get(int(call.params["run_id"]))
            return run if run and run["repo"] == self._repo_of(call) else None

        @route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}")
        async def get_run(call: Call) -> Response:
            run = run_of(call)
            if run is None:
                return self.missing(call)
            self._advance(run)
            return _json(self._public(run))

        @route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs")
        async def run_jobs(call: Call) -> Response:
            run = run_of(call)
            if run is None:
                return self.missing(call)
            jobs = [{key: value for key, value in job.items() if key != "log"}
                    for job in self.jobs.values() if job["run_id"] == run["id"]]
            return self._page(call, jobs, lambda chunk: {"total_count": len(jobs), "jobs": chunk})

        @route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel")
        async def cancel_run(call: Call) -> Response:
            run = run_of(call)
            if run is None:
                return self.missing(call)
            if run["status"] == "completed":
                return _json({"message": "Cannot cancel a workflow run that is completed."}, 409)
            run.update(status="completed", conclusion="cancelled", fate="cancelled")
            return _json({}, 202)

        @route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs")
        async def rerun(call: Call) -> Response:
            run = run_of(call)
            if run is None:
                return self.missing(call)
            run.update(status="queued", conclusion=None, fate="success", reads=0,
                       run_attempt=run["run_attempt"] + 1)
            return _json({}, 201)

        @route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs")
        async def job_logs(call: Call) -> Response:
            job = self.jobs.get(int(call.params["job_id"]))
            if job is None or self.runs[job["run_id"]]["repo"] != self._repo_of(call):
                return self.missing(call)
            # Another origin than the API's, as GitHub's log storage is: a client must not take its token along.
            port = call.request.headers.get("host", "127.0.0.1").rpartition(":")[2]
            return RedirectResponse(f"http://localhost:{port}/_logs/{job['id']}?sig=short-lived", 302)

        @route("GET", "/_logs/{job_id}", api=False)
        async def log_blob(call: Call) -> Response:
            self.log_downloads.append(call.request.headers)
            job = self.jobs.get(int(call.params["job_id"]))
            if job is None or call.query.get("sig") != "short-lived":
                return PlainTextResponse("expired", 404)
            return PlainTextResponse(job["log"])

        @route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs")
        async def check_runs(call: Call) -> Response:
            repo = self._repo_of(call)
            if repo is None:
                return self.missing(call)
            checks = [{"id": 71, "name": "test", "status": "completed", "conclusion": "success",
                       "started_at": CREATED, "completed_at": CREATED, "head_sha": _sha(call.params["ref"]),
                       "html_url": f"https://github.com/{repo}/runs/71"}]
            return self._page(call, checks, lambda chunk: {"total_count": len(checks), "check_runs": chunk})

    @staticmethod
    def _public(run: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in run.items() if key not in ("repo", "fate", "reads")}
