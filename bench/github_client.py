"""githubkit against plain HTTP for the github handler: what each costs to import, and per call.

A GitHub-shaped server runs in its own process on loopback and answers `GET /repos/{owner}/{repo}` and
`GET /repos/{owner}/{repo}/issues` with complete objects: every property of GitHub's own schema
(`sandbox/openapi/github.json`: full-repository, issue), filled from the file's examples. In this process each
client makes the same calls; the CPU it spends (process time, the server's excluded) and the wall time per call
are measured after a warm-up:

- plain: the gateway's pooled aiohttp client (`gateway_core.upstream`) and `json.loads`, as the handler calls;
- handler: `GitHubHandler.execute` (the same, plus argument validation and the shaping of the result);
- githubkit: `GitHub(...).rest.repos.async_get` / `rest.issues.async_list_for_repo` and `.parsed_data` (its
  typed models), and `.json()` alone (httpx without the models).

Imports are timed in fresh interpreters that first import the gateway (aiohttp, httpx and pydantic are loaded
already): what taking githubkit on, or PyJWT and cryptography for App auth, adds to a running gateway.

    .venv/bin/pip install 'githubkit[auth-app]' 'hishel<2'   # githubkit 0.16.1 does not import with hishel 2.0
    .venv/bin/python bench/github_client.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "ghp-bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- GitHub's own objects, from its file --------------------------------------------------------------


def example(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> Any:
    """A value for `schema` with every property, taken from the file's examples (types' plain values where it
    gives none); below depth 4 only the required properties, and lists are empty, as GitHub's nesting thins."""
    while "$ref" in schema:
        target: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = example(part, spec, depth)
            merged.update(value if isinstance(value, dict) else {})
        return merged
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return example(schema[key][0], spec, depth)
    if "example" in schema and schema.get("type") != "object":
        return schema["example"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        wanted = schema.get("required", []) if depth >= 4 else schema.get("properties", {})
        return {name: example(prop, spec, depth + 1) for name, prop in schema.get("properties", {}).items()
                if name in wanted}
    if kind == "array":
        return [example(schema.get("items", {}), spec, depth + 1)] if depth < 4 else []
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("format") == "date-time":
        return "2026-01-05T10:00:00Z"
    if schema.get("format") == "uri":
        return "https://api.github.com/repos/acme/web"
    return {"integer": 1, "number": 1.5, "boolean": True, "string": "text"}.get(str(kind))


def payloads() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    spec = json.loads((ROOT / "sandbox" / "openapi" / "github.json").read_text())
    schemas = spec["components"]["schemas"]
    repository = example(schemas["full-repository"], spec)
    repository.update(name="web", full_name="acme/web", default_branch="trunk")
    issues = []
    for number in range(1, 31):
        issue = example(schemas["issue"], spec)
        issue.update(number=number, title=f"Issue {number}")
        for absent in ("pull_request", "repository"):  # not in a repository's list of issues
            issue.pop(absent)
        issues.append(issue)
    return repository, issues


def serve(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    repository, issues = payloads()
    repository_body, issues_body = json.dumps(repository).encode(), json.dumps(issues).encode()

    async def get_repository(request: Request) -> Response:
        return Response(repository_body, media_type="application/json")

    async def list_issues(request: Request) -> Response:
        return Response(issues_body, media_type="application/json")

    app = Starlette(routes=[Route("/repos/{owner}/{repo}", get_repository),
                            Route("/repos/{owner}/{repo}/issues", list_issues)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the measurements ---------------------------------------------------------------------------------


async def measure(call: Callable[[], Awaitable[Any]], calls: int) -> dict[str, float]:
    for _ in range(min(100, calls)):
        await call()
    latencies = []
    cpu_started = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_started
    latencies.sort()
    return {"cpu_ms": cpu / calls * 1000, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


async def clients(url: str, calls: int) -> dict[str, dict[str, dict[str, float]]]:
    from githubkit import GitHub, TokenAuthStrategy

    from gateway_core.handlers.github import GitHubHandler
    from gateway_core.upstream import UpstreamClient

    plain = UpstreamClient(url, {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json"})
    handler = GitHubHandler(url, token=TOKEN)
    github = GitHub(TokenAuthStrategy(TOKEN), base_url=url, http_cache=False, auto_retry=False)
    get_repo, list_issues = handler.operations["get-repo"], handler.operations["list-issues"]
    repo_args, issues_args = get_repo.parse_args(["acme", "web"]), list_issues.parse_args(["acme", "web"])

    async def plain_repo() -> Any:
        return (await plain.request("GET", "/repos/acme/web")).json()

    async def plain_issues() -> Any:
        return (await plain.request("GET", "/repos/acme/web/issues", params={"per_page": "30"})).json()

    async def githubkit_repo() -> Any:
        return (await github.rest.repos.async_get("acme", "web")).parsed_data

    async def githubkit_issues() -> Any:
        return (await github.rest.issues.async_list_for_repo("acme", "web", per_page=30)).parsed_data

    async def githubkit_repo_json() -> Any:
        return (await github.rest.repos.async_get("acme", "web")).json()

    async def githubkit_issues_json() -> Any:
        return (await github.rest.issues.async_list_for_repo("acme", "web", per_page=30)).json()

    results: dict[str, dict[str, dict[str, float]]] = {}
    async with github:
        for name, repo_call, issues_call in [
            ("plain (aiohttp + json)", plain_repo, plain_issues),
            ("handler (plain + validation + shaping)", lambda: handler.execute(get_repo, repo_args),
             lambda: handler.execute(list_issues, issues_args)),
            ("githubkit .json() (httpx, no models)", githubkit_repo_json, githubkit_issues_json),
            ("githubkit .parsed_data (typed models)", githubkit_repo, githubkit_issues),
        ]:
            results[name] = {"get repository": await measure(repo_call, calls),
                             "list 30 issues": await measure(issues_call, calls)}
    await plain.aclose()
    await handler.aclose()
    return results


IMPORTS = {
    "githubkit + App auth + the models of these two calls":
        "import githubkit; from githubkit import GitHub, AppInstallationAuthStrategy; "
        "from githubkit_schemas.latest.models import FullRepository, Issue",
    "PyJWT + cryptography (App auth on plain HTTP)":
        "import jwt; from cryptography.hazmat.primitives.serialization import load_pem_private_key",
}


def import_ms(statement: str, runs: int = 5) -> float:
    """Milliseconds `statement` adds to a fresh interpreter that has imported the gateway already."""
    program = ("import time, gateway_core.gateway, httpx, pydantic\n"
               f"started = time.perf_counter()\n{statement}\nprint((time.perf_counter() - started) * 1000)")
    timings = [float(subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True,
                                    cwd=ROOT).stdout) for _ in range(runs)]
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    options = parser.parse_args()
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(port,), daemon=True)
    server.start()
    try:
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        results = asyncio.run(clients(f"http://127.0.0.1:{port}", options.calls))
    finally:
        server.terminate()
        server.join()
    repository, issues = payloads()
    sizes = f"answers of {len(json.dumps(repository)) / 1024:.0f} KiB and {len(json.dumps(issues)) / 1024:.0f} KiB"
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"githubkit {metadata.version('githubkit')}, httpx {metadata.version('httpx')}, "
          f"aiohttp {metadata.version('aiohttp')}, pydantic {metadata.version('pydantic')}; "
          f"{options.calls} calls each, one at a time, after a warm-up, server in its own process; {sizes}.\n")
    print(f"{'client':42} {'call':16} {'CPU/call':>10} {'p50':>9} {'p99':>9}")
    for client, calls in results.items():
        for call, figures in calls.items():
            print(f"{client:42} {call:16} {figures['cpu_ms']:8.3f}ms {figures['p50_ms']:7.3f}ms "
                  f"{figures['p99_ms']:7.3f}ms")
    print("\nImport time added to a running gateway (fresh interpreter, median of 5):")
    for name, statement in IMPORTS.items():
        print(f"  {name:55} {import_ms(statement):7.1f} ms")


if __name__ == "__main__":
    main()
