"""What the REST handlers (github, cloudflare, n8n) share: a vendor's route as data (which arguments fill the
path, which go in the query and which in the body, under the vendor's names), sending a request with the
transport's failures as the gateway's errors, and reading an answer.

`query` and `body` entries are `name` (the argument of that name) or `name=argument` (the vendor's name, then
ours: `per_page=limit`); unset (None) arguments are left out. Path values are one segment each (path_segment)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from gateway_core.catalog import DEFAULT_CATALOG
from gateway_core.errors import InvalidParams, ServiceUnavailable, UpstreamTimeout
from gateway_core.health import HealthReport
from gateway_core.upstream import UpstreamClient, UpstreamConnectionError, UpstreamResponse, UpstreamTimeoutError

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
PATH_STEPS = frozenset({"", ".", ".."})  # what a URL reads as steps, not names


def path_segment(argument: str, value: Any, safe: str = "") -> str:
    """An argument's value as one segment of a vendor's path, as the vendors' own clients send it: percent-encoded
    whole, `/`, `?` and `#` included (a branch `feature/x` in a `{ref}` is one segment). Empty, `.` and `..` are
    refused: a URL takes them as steps, and `../security/keys#` made a get-application grant read Coolify's
    private keys with the gateway's token."""
    text = str(value)
    if text in PATH_STEPS:
        raise InvalidParams(f"Invalid arguments: {argument}: {text!r} is not a name",
                            {"errors": [{"field": argument, "message": "empty, . and .. are not names",
                                         "type": "value_error"}]})
    return quote(text, safe=safe)


def fill_path(template: str, values: Mapping[str, Any]) -> str:
    """A route's path with each `{argument}` filled by path_segment."""
    return _PLACEHOLDER.sub(lambda match: path_segment(match[1], values[match[1]]), template)


@dataclass(frozen=True, slots=True)
class Route:
    """One upstream call. `constants` are body fields always sent, `fixed_query` query parameters always sent;
    `body_from` names an argument holding an object (a pydantic model or a dict) whose set fields join the body;
    a route with `when` is taken only when that argument is set, neither None nor False (an operation's other
    route otherwise)."""

    method: HttpMethod
    path: str
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    body_from: str | None = None
    constants: Mapping[str, Any] = field(default_factory=dict)
    fixed_query: Mapping[str, str] = field(default_factory=dict)
    when: str | None = None

    @property
    def placeholders(self) -> list[str]:
        return _PLACEHOLDER.findall(self.path)

    def arguments(self) -> set[str]:
        """Every argument this route reads (for checks that the declaration names real fields)."""
        named = {_split(entry)[1] for entry in (*self.query, *self.body)}
        return {*self.placeholders, *named, *([self.body_from] if self.body_from else []),
                *([self.when] if self.when else [])}

    def takes_body(self) -> bool:
        return bool(self.body or self.body_from or self.constants)

    def url_path(self, values: Mapping[str, Any]) -> str:
        return fill_path(self.path, values)

    def query_params(self, values: Mapping[str, Any]) -> dict[str, str]:
        pairs = (_split(entry) for entry in self.query)
        return {**self.fixed_query, **{name: query_value(values[argument]) for name, argument in pairs
                                       if values.get(argument) is not None}}

    def json_body(self, values: Mapping[str, Any]) -> dict[str, Any] | None:
        if not self.takes_body():
            return None
        body: dict[str, Any] = dict(self.constants)
        if self.body_from is not None and values.get(self.body_from) is not None:
            body.update({key: value for key, value in dict(values[self.body_from]).items() if value is not None})
        pairs = (_split(entry) for entry in self.body)
        body.update({name: values[argument] for name, argument in pairs if values.get(argument) is not None})
        return body


def choose_route(routes: tuple[Route, ...], values: Mapping[str, Any]) -> Route:
    """The first route whose `when` argument is set (neither None nor False), else the first without one."""
    return next((route for route in routes if route.when is not None and values.get(route.when) not in (None, False)),
                None) or next(route for route in routes if route.when is None)


def instance_root(url: str, api_prefix: str) -> str:
    """An instance's root URL, whether the setting was given with the API's prefix, a trailing slash, or neither."""
    root = url.strip().rstrip("/")
    return root.removesuffix(api_prefix).rstrip("/")


def query_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _split(entry: str) -> tuple[str, str]:
    name, _, argument = entry.partition("=")
    return name, argument or name


async def send(client: UpstreamClient, vendor: str, url_setting: str, method: str, path: str, *,
               params: Mapping[str, str] | None = None, json_body: Any = None,
               timeout_seconds: float | None = None) -> UpstreamResponse:
    """One request; a timeout is -32006 and an unreachable upstream -32001 naming the setting to check."""
    try:
        return await client.request(method, path, params=params or None, json_body=json_body,
                                    timeout_seconds=timeout_seconds)
    except UpstreamTimeoutError as exc:
        raise UpstreamTimeout(f"{vendor}: {exc}", {"service": vendor.lower()}) from None
    except UpstreamConnectionError as exc:
        raise ServiceUnavailable(f"{vendor} unreachable: {exc}: check {url_setting}",
                                 {"service": vendor.lower()}) from None


def json_answer(response: UpstreamResponse) -> Any:
    """The answer's JSON; its text where it is not JSON (a log, a zone file); {} when empty."""
    if not response.body:
        return {}
    try:
        return response.json()
    except ValueError:
        return response.text


def json_of(response: UpstreamResponse, vendor: str, url_setting: str) -> Any:
    """The answer's JSON ({} when empty), where only JSON can be the answer: anything else (a proxy's HTML page
    in front of the service) is the upstream failing, -32001, not a bug of ours (-32603)."""
    if not response.body:
        return {}
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type", "no content type").split(";")[0]
        raise ServiceUnavailable(f"{vendor} answered HTTP {response.status} with something that is not JSON ({kind}): "
                                 f"is {url_setting} the service itself, not a proxy's page?",
                                 {"service": vendor.lower()}) from None


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def health_answer(vendor: str, report: HealthReport, details: Mapping[str, Any]) -> dict[str, Any]:
    """The `health` operation's answer: the check's report and what it found; a service that is down is an
    error (-32001), as any call to it would be."""
    data = {"operation": "health", "status": report.status, **details, "latency": report.latency_ms,
            "message": report.message}
    if report.status == "down":
        raise ServiceUnavailable(f"{vendor} is down: {report.message}", {"service": vendor.lower(), **data})
    return data


def priced(service: str, tokens: int | None) -> float | None:
    """What `tokens` cost at the service's catalog rate (its costPerCall over its avgTokensPerCall): the price
    of an operation whose token count the spec gives in its "cap." column."""
    if tokens is None:
        return None
    spec = next(spec for spec in DEFAULT_CATALOG if spec.name == service)
    return round(tokens * spec.cost_per_call / spec.avg_tokens_per_call, 8)


def pick(item: Any, *fields: str) -> dict[str, Any]:
    """The named fields of an object answer (None where it lacks one); {} for anything else."""
    return {name: item.get(name) for name in fields} if isinstance(item, dict) else {}
