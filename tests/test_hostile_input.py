"""The gateway and our orchestrator as a hostile caller finds them (the hardening issue), over real HTTP.

Hypothesis generates thousands of requests: JSON-RPC objects whose every field may be any JSON type, batches,
bytes that are not JSON, JSON nested 990+ levels deep, NaN and Infinity, huge and lone-surrogate strings, odd
`Authorization` and `X-Agent-Id` headers (a valid agent token half the time, so the pipeline is reached too),
and the orchestrator's routes with and without the operator token. One gateway per test function serves them
on the test's event loop while the examples run in a worker thread with a blocking client.

Each answer is checked as it comes: valid JSON, no 5xx the spec does not table, the error code the spec gives
for unparsable or oversize bodies, the HTTP status the spec gives for each code, no credential echoed back.
A broken property does not stop the storm (what it leaves behind is checked after it); hypothesis then shrinks
one minimal input per broken property. After the storm: one ordinary call succeeds, the ledger holds it and one
row per request sent (a batch: one per item), the audit log holds no huge value and no token in clear,
`/metrics` stays small, `/ready` answers 200, and the runtime shuts down within a bound. The test fails once,
listing every broken property."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.servers import LinkedGateway, run_linked

T = TypeVar("T")

# The servers run on the test's loop while hypothesis draws in a worker thread; their own use of `random` (the
# feed's WebSocket pings) lands between draws, which hypothesis takes for a strategy using it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning")

# -- the contract, as gateway-protocol.md tables it -------------------------------------------------------

HTTP_STATUS_OF_CODE = {-32700: 400, -32600: 400, -32601: 404, -32602: 400, -32603: 500, -32000: 404,
                       -32001: 503, -32002: 400, -32003: 401, -32004: 403, -32005: 429, -32006: 504,
                       -32007: 404, -32008: 409, -32009: 400, -32010: 402}
# The only 5xx the spec gives to a code a caller can meet; -32603 (500) is by definition a bug.
TABLED_5XX = {503: -32001, 504: -32006}
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_BODY_BYTES = 1 << 20  # README: "Bodies over 1 MiB are refused with 413"
# README: a body over the limit is 413, a header block over 16 KiB is 431; both carry -32600.
TOO_LARGE_STATUSES = {413, 431}
LEDGER_ROUTES = ("/mcp/rpc", "/mcp/execute")

# -- the bounds the issue asks for ------------------------------------------------------------------------

METRICS_LIMIT_BYTES = 1_000_000
AUDIT_VALUE_LIMIT_CHARS = 4_096
SHUTDOWN_BOUND_SECONDS = 15
REQUEST_TIMEOUT_SECONDS = 10  # an answer slower than this is a hang: reported, not waited for
SHRINK_SECONDS = 8  # effort spent shrinking the inputs that broke a property (which ones broke is decided before)
HEADERS_ANY_SERVER_TAKES = 8_000  # bytes of headers below every server's limit: the body is read, then judged
TOKEN_IN_CLEAR = re.compile(r"mcpa_[A-Za-z0-9_-]{8,}")  # what an agent token looks like (auth.new_token)

STORM_SETTINGS = settings(
    derandomize=True,  # the same requests on every run, so CI is repeatable
    database=None,
    deadline=None,  # real HTTP: timing is not a property here
    suppress_health_check=list(HealthCheck),  # slow, large examples are the point
    print_blob=False,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)


# -- generated input ---------------------------------------------------------------------------------------


def weighted(*choices: tuple[int, SearchStrategy[Any]]) -> SearchStrategy[Any]:
    """Draws from one of the strategies, chosen in proportion to its weight (one_of would pick each strategy
    equally often, repeated or not). Shrinks towards the first."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(pool).flatmap(lambda strategy: strategy)


def mostly(good: SearchStrategy[Any], weight: int = 4) -> SearchStrategy[Any]:
    """A field that is `good` `weight` times in `weight + 1`, otherwise any JSON value or a huge string."""
    return weighted((weight, good), (1, ANY_VALUE))


LONE_SURROGATE_TEXT = st.tuples(st.text(max_size=4), st.characters(categories=["Cs"]), st.text(max_size=4)).map(
    "".join)
HUGE_TEXT = st.tuples(st.sampled_from(["x", "é", "\ud800", "mcpa_", "\u202e"]),
                      st.sampled_from([2_000, 20_000, 100_000])).map(lambda unit_times: unit_times[0] * unit_times[1])
ODD_TEXT = weighted(
    (3, st.text(max_size=12)),
    (1, LONE_SURROGATE_TEXT),
    (1, st.sampled_from(["", " ", "\x00", "null", "2.0", "mcp.execute ", "MCP.EXECUTE", "__proto__", "constructor",
                         "../../etc/passwd", "%s%n", "' OR 1=1 --", "\u202e", "\ufeff", "mcpa_" + "A" * 43])),
)
BIG_INTS = st.one_of(st.integers(), st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**100]))
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), BIG_INTS, FINITE_FLOATS, ODD_TEXT)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=6)
ANY_VALUE = weighted((5, JSON_VALUES), (1, HUGE_TEXT))

HEADER_VALUE_BYTES = [*range(0x21, 0x7F), *range(0x80, 0x100), ord(" "), ord("\t")]
# Mostly calls the pipeline runs to the end: the echo service, granted to the storm's agent.
RPC_METHODS = weighted((6, st.just("mcp.execute")),
                       (1, st.sampled_from(["mcp.listServices", "mcp.getCapabilities", "mcp.getStatistics"])))
SERVICES = weighted((4, st.just("echo")), (1, st.sampled_from(["coolify", "mem0", "cf", "postgresql", "nosuch", ""])))
OPERATIONS = weighted((4, st.sampled_from(["echo", "free", "wipe"])),  # not "nap": it sleeps upstream
                      (1, st.sampled_from(["shout", "", "list-servers"])))
ECHO_MESSAGES = mostly(st.text(min_size=1, max_size=20), 3)
ECHO_TIMES = mostly(st.integers(1, 10), 3)
ECHO_ARGS = st.one_of(
    st.tuples(ECHO_MESSAGES, ECHO_TIMES).map(list),
    st.tuples(ECHO_MESSAGES).map(list),
    st.fixed_dictionaries({"message": ECHO_MESSAGES}, optional={"times": ECHO_TIMES}),
    st.fixed_dictionaries({"message": ECHO_MESSAGES}).map(lambda named: [named]),
)
OPTIONS = st.fixed_dictionaries({}, optional={
    "waitForApproval": mostly(st.floats(0, 0.5)), "times": ECHO_TIMES, "force": JSON_VALUES, "limit": BIG_INTS})


@st.composite
def some_keys(draw: st.DrawFn, fields: dict[str, tuple[int, SearchStrategy[Any]]]) -> dict[str, Any]:
    """An object with each key present `percent` of the time (fixed_dictionaries' optional keys are 50/50)."""
    drawn: dict[str, Any] = {}
    for key, (percent, strategy) in fields.items():
        if draw(st.integers(0, 99)) < percent:
            drawn[key] = draw(strategy)
    return drawn


EXECUTE_PARAMS = some_keys({
    "service": (92, mostly(SERVICES, 10)),
    "operation": (90, mostly(OPERATIONS, 10)),
    "args": (85, mostly(ECHO_ARGS, 3)),
    "options": (25, mostly(OPTIONS)),
    "database": (5, mostly(ODD_TEXT)),
})
RPC_IDS = st.one_of(BIG_INTS, ODD_TEXT, st.none(), FINITE_FLOATS)
RPC_OBJECTS = some_keys({
    "jsonrpc": (95, mostly(st.just("2.0"), 12)),
    "method": (95, mostly(RPC_METHODS, 12)),
    "id": (85, mostly(RPC_IDS)),
    "params": (90, weighted((10, EXECUTE_PARAMS), (1, JSON_VALUES))),
})
SLASH_COMMANDS = st.tuples(
    st.sampled_from(["/mcp-echo", "/mcp-nosuch", "/mcp-cf", "/mcp-", "mcp-echo", "/MCP-ECHO", "/mcp-postgres"]),
    st.sampled_from(["echo", "wipe", "free", "", "shout", "list tables", "ka-db query"]),
    st.lists(st.one_of(st.text(max_size=10), st.sampled_from(["'", '"', "'hello world'", '"unclosed', "2", "99"])),
             max_size=4),
).map(lambda parts: " ".join([parts[0], parts[1], *parts[2]]))
SLASH_OBJECTS = some_keys({
    "command": (95, mostly(SLASH_COMMANDS, 6)),
    "options": (25, mostly(OPTIONS)),
    "id": (80, mostly(RPC_IDS)),
})
NOT_JSON = st.one_of(
    st.binary(max_size=64).filter(lambda content: not parses_as_json(content)),
    st.sampled_from([b"", b"{", b'{"jsonrpc": "2.0", "method"', b"[1,]", b"{'jsonrpc': '2.0'}", b"\xff\xfe",
                     b'{"a":1}{"b":2}', b"\x00", b"nul", b"--",
                     b'{"jsonrpc":"2.0","method":"mcp.listServices","id":1} trailing', b"\xed\xa0\x80"]),
)
NESTING_DEPTHS = st.sampled_from([990, 1_000, 5_000])


def deeply_nested(depth: int, shape: str) -> bytes:
    if shape == "arrays":
        return b"[" * depth + b"]" * depth
    if shape == "objects":
        return b'{"a":' * depth + b"1" + b"}" * depth
    inner = b"[" * depth + b"]" * depth
    if shape == "in id":
        return b'{"jsonrpc":"2.0","method":"mcp.listServices","id":' + inner + b"}"
    return (b'{"jsonrpc":"2.0","method":"mcp.execute","id":1,"params":{"service":"echo","operation":"echo","args":'
            + inner + b"}}")


DEEP_BODIES = st.tuples(NESTING_DEPTHS, st.sampled_from(["arrays", "objects", "in id", "in args"])).map(
    lambda depth_shape: deeply_nested(*depth_shape))
NON_FINITE_NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf")])


def with_non_finite_number(body: dict[str, Any], number: float, where: str) -> bytes:
    """A request with NaN or (-)Infinity somewhere: Python's json writes them as bare literals, not JSON."""
    placed = json.loads(json.dumps(body))
    if where == "id":
        placed["id"] = number
    elif where == "args":
        placed["params"] = {"service": "echo", "operation": "echo", "args": ["hi", number]}
    else:
        placed[where] = number
    return json.dumps(placed).encode()


NON_FINITE_BODIES = st.tuples(RPC_OBJECTS, NON_FINITE_NUMBERS, st.sampled_from(["id", "args", "method", "jsonrpc"])
                              ).map(lambda parts: with_non_finite_number(*parts))
OVERSIZE_BODIES = st.sampled_from([MAX_BODY_BYTES + 1, 2 * MAX_BODY_BYTES]).map(
    lambda size: b'{"jsonrpc":"2.0","method":"mcp.listServices","id":1,"pad":"' + b"x" * size + b'"}')


def parses_as_json(content: bytes) -> bool:
    """JSON (no NaN or Infinity) in UTF-8, or in UTF-16 or UTF-32 as RFC 7159 allowed and Python's json reads."""
    try:
        json.loads(content, parse_constant=refuse_non_finite)
    except (ValueError, RecursionError):
        return False
    return True


def refuse_non_finite(literal: str) -> Any:
    raise ValueError(f"{literal} is not JSON")  # Python's json takes NaN and Infinity; no JSON parser must


def strict_json(content: bytes) -> Any:
    """RFC 8259 JSON, in UTF-8."""
    return json.loads(content.decode("utf-8"), parse_constant=refuse_non_finite)


def encoded(value: Any) -> bytes:
    # ensure_ascii: lone surrogates travel as \ud800 escapes, which is valid JSON text in UTF-8.
    return json.dumps(value, allow_nan=False).encode()


# -- requests, and what each must leave behind -----------------------------------------------------------


class HostileRequest:
    """One generated HTTP request. `body_kind` says what the body is: json, not-json, non-finite or deep."""

    def __init__(self, method: str, path: str, content: bytes | None, headers: list[tuple[str, bytes]],
                 body_kind: str = "json", note: str = "") -> None:
        self.method = method
        self.path = path
        self.content = content
        self.headers = headers
        self.body_kind = body_kind
        self.note = note  # what the headers hold, for the report (they may be 1 MB)

    def _key(self) -> tuple[Any, ...]:
        return self.method, self.path, self.content, tuple(self.headers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HostileRequest) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def oversize(self) -> bool:
        return self.content is not None and len(self.content) > MAX_BODY_BYTES

    @property
    def headers_any_server_takes(self) -> bool:
        return sum(len(name) + len(value) for name, value in self.headers) <= HEADERS_ANY_SERVER_TAKES

    @property
    def batch_size(self) -> int:
        """Items of a JSON-RPC batch (a non-empty JSON array sent to /mcp/rpc); 0 for anything else."""
        if self.path != "/mcp/rpc" or self.body_kind != "json" or self.oversize or self.content is None:
            return 0
        payload = strict_json(self.content)
        return len(payload) if isinstance(payload, list) else 0

    def ledger_rows(self, refused_whole: bool = False) -> int:
        """The rows the ledger must gain: one per HTTP request on /mcp/*, one per item for a batch (unless the
        batch was refused whole, before its items were read: then it is one request, one row)."""
        if self.path not in LEDGER_ROUTES:
            return 0
        return 1 if refused_whole else max(1, self.batch_size)

    @property
    def expected_error(self) -> tuple[int, int] | None:
        """The (HTTP status, code) the contract fixes for this body, where it fixes one. (Headers over a server's
        limit may be refused before the body is read.)"""
        if self.path not in LEDGER_ROUTES or not self.headers_any_server_takes:
            return None
        if self.oversize:
            return 413, INVALID_REQUEST
        if self.body_kind in ("not-json", "non-finite", "deep"):
            return 400, PARSE_ERROR
        return None

    def __repr__(self) -> str:
        content = self.content or b""
        shown = content if len(content) <= 300 else content[:240] + b"...(%d bytes)" % len(content)
        path = self.path if len(self.path) <= 200 else f"{self.path[:160]}...({len(self.path)} chars)"
        return f"{self.method} {path} [{self.body_kind}] {shown!r}{' ' + self.note if self.note else ''}"


@dataclass(frozen=True)
class Violation:
    property: str  # which property an answer broke, e.g. "the answer is JSON"
    detail: str
    kind: str = ""  # what the answer was, e.g. "HTTP 431, code -32600": the report groups by it


@dataclass
class StormLog:
    """What was sent and answered; written only by the storm's one worker thread."""

    sent: int = 0
    due_rows: int = 0  # ledger rows the requests sent so far must have written
    answered_codes: Counter[int] = field(default_factory=Counter)
    # property -> kind of answer -> each request that broke it, with the answer
    broken: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def note(self, request: HostileRequest, violations: list[Violation]) -> list[Violation]:
        for violation in violations:
            by_kind = self.broken.setdefault(violation.property, {})
            by_kind.setdefault(violation.kind, []).append(f"{request!r} -> {violation.detail}")
        return violations

    def describe_broken(self) -> list[str]:
        described = []
        for prop, by_kind in self.broken.items():
            count = sum(len(examples) for examples in by_kind.values())
            kinds = sorted(by_kind.items(), key=lambda kind_examples: -len(kind_examples[1]))
            described.append(f"{prop}: broken by {count} of {self.sent} requests" + "".join(
                f"\n    {len(examples)}x {kind}; the shortest: {min(examples, key=len)[:1_000]}"
                for kind, examples in kinds[:5]))
        return described


@dataclass(frozen=True)
class Credentials:
    agent_id: str
    agent_token: str
    operator_token: str


def header_note(name: str, value: bytes, credentials: Credentials) -> str:
    """A header as the report shows it: the real tokens by name, a huge value by its size."""
    for secret, name_of_secret in ((credentials.agent_token, b"<agent token>"),
                                   (credentials.operator_token, b"<operator token>")):
        value = value.replace(secret.encode(), name_of_secret)
    if len(value) <= 60:
        return f"{name}: {value!r}"
    return f"{name}: {value[:20]!r}...({len(value)} bytes)"


@st.composite
def agent_headers(draw: st.DrawFn, credentials: Credentials) -> list[tuple[str, bytes]]:
    """Authorization with the valid agent token half the time, else something odd; X-Agent-Id sometimes."""
    token = credentials.agent_token
    # Any bytes HTTP allows in a header value (RFC 9110: visible ASCII, obs-text, inner spaces): a control
    # character makes it not HTTP at all, refused by uvicorn's parser before the gateway sees it.
    header_bytes = st.lists(st.sampled_from(HEADER_VALUE_BYTES), max_size=40).map(lambda raw: bytes(raw).strip())
    huge = st.sampled_from([8_192, 65_536, 1 << 20]).map(lambda size: b"a" * size)
    headers = [("content-type", b"application/json")]
    if draw(st.booleans()):
        headers.append(("authorization", f"Bearer {token}".encode()))
    else:
        odd = draw(st.one_of(
            st.none(),
            st.sampled_from([b"Bearer", b"Bearer\tmcpa_", b"Basic dXNlcjpwYXNz", f"bearer  {token}".encode(),
                             f"Bearer {token}x".encode(), f"Bearer {token[:-1]}".encode(),
                             f"Bearer {credentials.operator_token}".encode(), token.encode()]),
            st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=8, max_size=43).map(
                lambda tail: f"Bearer mcpa_{tail}".encode()),
            huge.map(lambda value: b"Bearer " + value),
            header_bytes,
        ))
        if odd is not None:
            headers.append(("authorization", odd))
    claimed = draw(weighted((4, st.none()), (1, st.one_of(
        st.sampled_from([credentials.agent_id.encode(), b"someone-else", token.encode(),
                         f"mcpa_{'B' * 43}".encode(), b"agent_\xff\xfe", f"{credentials.agent_id}x".encode()]),
        huge, header_bytes))))
    if claimed is not None:
        headers.append(("x-agent-id", claimed))
    return headers


@st.composite
def gateway_requests(draw: st.DrawFn, credentials: Credentials) -> HostileRequest:
    headers = draw(agent_headers(credentials))
    note = "; ".join(header_note(name, value, credentials) for name, value in headers if name != "content-type")
    path = draw(weighted((4, st.just("/mcp/rpc")), (1, st.just("/mcp/execute"))))
    kind = draw(weighted((20, st.just("object")), (6, st.just("batch")), (2, st.just("any json")),
                         (2, st.just("not-json")), (2, st.just("non-finite")), (2, st.just("deep")),
                         (1, st.just("oversize"))))
    objects = RPC_OBJECTS if path == "/mcp/rpc" else SLASH_OBJECTS
    if kind == "object":
        return HostileRequest("POST", path, encoded(draw(objects)), headers, "json", note)
    if kind == "batch":
        items = draw(st.lists(weighted((4, objects), (1, JSON_VALUES)), max_size=6))
        return HostileRequest("POST", path, encoded(items), headers, "json", note)
    if kind == "any json":
        return HostileRequest("POST", path, encoded(draw(JSON_VALUES)), headers, "json", note)
    if kind == "oversize":
        return HostileRequest("POST", path, draw(OVERSIZE_BODIES), headers, "json", note)
    body = {"not-json": NOT_JSON, "non-finite": NON_FINITE_BODIES, "deep": DEEP_BODIES}[kind]
    return HostileRequest("POST", path, draw(body), headers, kind, note)


# -- checking one answer -----------------------------------------------------------------------------------


def excerpt(response: httpx.Response) -> str:
    text = response.content[:300].decode("utf-8", "replace")
    return f"HTTP {response.status_code} {text!r}"


def json_answer(response: httpx.Response) -> tuple[Any, Violation | None]:
    """The answer's body (None for 204) or the violation that it is not JSON."""
    if response.status_code == 204:
        return None, (Violation("the answer is JSON", f"a 204 with a body: {excerpt(response)}", "HTTP 204")
                      if response.content else None)
    try:
        return strict_json(response.content), None
    except (ValueError, RecursionError) as exc:
        return None, Violation("the answer is JSON", f"not JSON ({exc}): {excerpt(response)}",
                               f"HTTP {response.status_code} {response.headers.get('content-type')}")


def error_code(body: Any) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, int) else None
    return None


def is_envelope(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or "id" not in body:
        return False
    if ("result" in body) == ("error" in body):
        return False
    error = body.get("error")
    return error is None or (isinstance(error, dict) and isinstance(error.get("code"), int)
                             and isinstance(error.get("message"), str))


def gateway_answer_violations(request: HostileRequest, response: httpx.Response, credentials: Credentials,
                              log: StormLog) -> list[Violation]:
    status = response.status_code
    body, not_json = json_answer(response)
    log.due_rows += request.ledger_rows(refused_whole=request.batch_size > 0 and isinstance(body, dict))
    for item in body if isinstance(body, list) else [body]:
        code = error_code(item)
        if code is not None:
            log.answered_codes[code] += 1
    answer = excerpt(response)
    kind = f"HTTP {status}, code {error_code(body)}"
    violations = [not_json] if not_json else []
    if status >= 500 and TABLED_5XX.get(status) != error_code(body):
        violations.append(Violation("no 5xx but -32001/503 and -32006/504", answer, kind))
    if request.expected_error is not None and (status, error_code(body)) != request.expected_error:
        status_wanted, code_wanted = request.expected_error
        body_kind = request.body_kind if code_wanted == PARSE_ERROR else "oversize"
        violations.append(Violation(f"a {body_kind} body is HTTP {status_wanted} with {code_wanted}", answer, kind))
    if isinstance(body, list):
        if not (status == 200 and body and all(is_envelope(item) for item in body)):
            violations.append(Violation("a batch is answered 200 with a list of envelopes", answer, kind))
    elif body is not None:
        code = error_code(body)
        if not is_envelope(body):
            violations.append(Violation("the answer is a JSON-RPC 2.0 envelope", answer, kind))
        elif code is not None and status not in (
                {HTTP_STATUS_OF_CODE.get(code)} | (TOO_LARGE_STATUSES if code == INVALID_REQUEST else set())):
            violations.append(Violation("each code comes with its HTTP status in the spec's table", answer, kind))
    if credentials.agent_token in response.text:
        violations.append(Violation("no token in an answer", answer, kind))
    return log.note(request, violations)


def exchange(client: httpx.Client, request: HostileRequest, log: StormLog) -> httpx.Response | Violation:
    log.sent += 1
    try:
        return client.request(request.method, request.path, content=request.content,
                              headers=[(name.encode(), value) for name, value in request.headers])
    except httpx.LocalProtocolError:
        raise  # the client would not send it: a bug of this test's generator
    except httpx.TransportError as exc:
        log.due_rows += request.ledger_rows()  # the server may have recorded what it never answered
        return log.note(request, [Violation("every request is answered", repr(exc), type(exc).__name__)])[0]


# -- running a storm, and what must hold after it ----------------------------------------------------------

_BROKEN_PROPERTY: dict[str, type[AssertionError]] = {}


def properties_broken(violations: list[Violation]) -> AssertionError:
    """An AssertionError of a class of its own per set of broken properties: hypothesis tells failures apart by
    their type and origin, so each is shrunk and reported on its own (a 500 in plain text, which breaks two
    properties, apart from a 404 in plain text, which breaks one)."""
    broken = " + ".join(sorted({violation.property for violation in violations}))
    kind = _BROKEN_PROPERTY.setdefault(broken, type("PropertiesBroken", (AssertionError,), {}))
    return kind(f"{broken}: {violations[0].detail}")


def hypothesis_failures(error: BaseException) -> list[str]:
    """One entry per distinct failure hypothesis reports, with its shrunk (falsifying) example."""
    failures = error.exceptions if isinstance(error, BaseExceptionGroup) else (error,)
    described = []
    for failure in failures:
        text = "\n".join([str(failure), *getattr(failure, "__notes__", [])]).strip()
        described.append(text if len(text) <= 3_000 else text[:3_000] + " ...")
    return described


def storm_then_shrink(strategy: SearchStrategy[T], send_and_check: Callable[[T], list[Violation]],
                      max_examples: int) -> list[str]:
    """Sends `max_examples` generated requests, noting (not raising) each broken property, so that the whole
    storm reaches the server whatever breaks. Then, if anything broke, runs hypothesis again raising, so that it
    shrinks one minimal input per broken property, for SHRINK_SECONDS at most: past that, an input not tried yet
    counts as passing, so hypothesis stops at the smallest failing input found so far. Returns those inputs.
    Runs in a worker thread."""
    outcomes: dict[T, list[Violation]] = {}  # the same request breaks the same properties: sent once in the shrink

    @settings(STORM_SETTINGS, max_examples=max_examples, phases=[Phase.generate])
    @given(strategy)
    def storm(item: T) -> None:
        outcomes[item] = send_and_check(item)

    storm()
    if not any(outcomes.values()):
        return []
    shrink_until = time.monotonic() + SHRINK_SECONDS

    @settings(STORM_SETTINGS, max_examples=max_examples)
    @given(strategy)
    def shrink(item: T) -> None:
        if item not in outcomes and time.monotonic() < shrink_until:
            outcomes[item] = send_and_check(item)
        violations = outcomes.get(item, [])
        if violations:
            raise properties_broken(violations)

    try:
        shrink()
    except AssertionError as error:
        return hypothesis_failures(error)
    except BaseExceptionGroup as group:
        broken, other = group.split(AssertionError)
        if other is not None:  # a bug of this test, not of the server
            raise
        assert broken is not None
        return hypothesis_failures(broken)
    return []


async def storm_from_a_thread(log: StormLog, failures: list[str], storm: Callable[[], list[str]]) -> None:
    """Runs the storm in a worker thread while the servers keep this loop; lists what broke."""
    shrunk = await asyncio.to_thread(storm)
    failures.extend(log.describe_broken())
    failures.extend(f"shrunk by hypothesis: {text}" for text in shrunk)


def strings_in(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


async def check_audit_log(linked: LinkedGateway, credentials: Credentials, failures: list[str]) -> None:
    events = await linked.gateway.store.list_audit(limit=1_000_000)
    huge: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for event in events:
        for value in [event.actor, event.action, event.subject, *strings_in(event.detail)]:
            if value is None:
                continue
            if len(value) > AUDIT_VALUE_LIMIT_CHARS:
                huge[f"{event.action} ({len(value):,} chars)"] += 1
            if TOKEN_IN_CLEAR.search(value) or credentials.agent_token in value:
                masked = TOKEN_IN_CLEAR.sub(lambda token: token.group()[:9] + "...", value)
                tokens[f"{event.action}: {masked[:60]!r}"] += 1
    if huge:
        failures.append(f"audit log: {sum(huge.values())} values longer than {AUDIT_VALUE_LIMIT_CHARS} chars, "
                        f"e.g. {huge.most_common(3)}")
    if tokens:
        failures.append(f"audit log: {sum(tokens.values())} values hold an agent token in clear, "
                        f"e.g. {tokens.most_common(3)}")


@dataclass(frozen=True)
class OrdinaryCall:
    answered: bool  # an answered call is a ledger row, whether it succeeded or not
    call_id: str | None  # when it succeeded


async def ordinary_call(linked: LinkedGateway, credentials: Credentials, failures: list[str]) -> OrdinaryCall:
    """One authenticated mcp.execute on the echo service, which must succeed."""
    body = {"jsonrpc": "2.0", "method": "mcp.execute", "id": "after-the-storm",
            "params": {"service": "echo", "operation": "echo", "args": ["still here"]}}
    async with httpx.AsyncClient(base_url=linked.url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        try:
            response = await client.post("/mcp/rpc", json=body,
                                         headers={"authorization": f"Bearer {credentials.agent_token}"})
        except httpx.TransportError as exc:
            failures.append(f"the ordinary call after the storm got no answer: {exc!r}")
            return OrdinaryCall(False, None)
    try:
        result = response.json()["result"]
        assert result["data"] == {"echo": "still here"}
        return OrdinaryCall(True, str(result["metadata"]["callId"]))
    except (ValueError, KeyError, TypeError, AssertionError):
        failures.append(f"the ordinary call after the storm failed: {excerpt(response)}")
        return OrdinaryCall(True, None)


async def check_ledger(linked: LinkedGateway, log: StormLog, ordinary: OrdinaryCall, failures: list[str]) -> None:
    """The ledger holds every request sent (a batch: each item) and the ordinary call."""
    recorder = linked.gateway.recorder
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            await recorder.flush()
    except Exception as exc:
        failures.append(f"ledger: writing the queued rows fails ({exc!r}); {recorder.pending} rows stay queued")
    rows = [row async for row in linked.gateway.store.iter_calls()]
    expected = log.due_rows + (1 if ordinary.answered else 0)
    if len(rows) != expected:
        failures.append(f"ledger: {len(rows)} rows, expected {expected} ({log.sent} HTTP requests sent, "
                        f"{log.due_rows} rows due for them, plus the ordinary call)")
    if ordinary.call_id is not None and ordinary.call_id not in {row.id for row in rows}:
        failures.append(f"ledger: the ordinary call ({ordinary.call_id}) is not in it")
    missing = log.answered_codes - Counter(row.error_code for row in rows if row.error_code is not None)
    if missing:
        failures.append(f"ledger: refusals answered but not recorded, by code: {dict(missing)}")


async def check_gateway_endpoints(linked: LinkedGateway, failures: list[str]) -> None:
    async with httpx.AsyncClient(base_url=linked.url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        metrics = await client.get("/metrics")
        ready = await client.get("/ready")
    if metrics.status_code != 200:
        failures.append(f"/metrics: {excerpt(metrics)}")
    elif len(metrics.content) > METRICS_LIMIT_BYTES:
        series = sum(1 for line in metrics.text.splitlines() if line and not line.startswith("#"))
        failures.append(f"/metrics: {len(metrics.content):,} bytes ({series:,} series), over the "
                        f"{METRICS_LIMIT_BYTES:,} bytes bound")
    if ready.status_code != 200:
        failures.append(f"/ready: {excerpt(ready)}")


@contextlib.asynccontextmanager
async def hostile_target(tmp_path: Path, failures: list[str]) -> AsyncIterator[tuple[LinkedGateway, Credentials]]:
    """Our gateway and orchestrator as `serve` runs them, an agent granted the echo service; on exit, a shutdown
    that must end within SHUTDOWN_BOUND_SECONDS and without raising."""
    stack = contextlib.AsyncExitStack()
    # A storm of thousands of valid calls from one agent must not end in rate-limit refusals of the ordinary
    # call; and an operation that sleeps upstream must not stall it.
    linked = await stack.enter_async_context(run_linked(
        tmp_path / "x.db", rate_limit={"per_agent": {"max_requests": 10_000_000, "window_ms": 60_000}},
        upstream_timeout_seconds=3))
    try:
        agent_id, agent_token = await linked.add_agent("storm-agent")
        await linked.gateway.store.add_grant(agent_id, "echo", None, None, "test")
        assert linked.operator_token is not None
        yield linked, Credentials(agent_id, agent_token, linked.operator_token)
    finally:
        try:
            async with asyncio.timeout(SHUTDOWN_BOUND_SECONDS):
                await stack.aclose()
        except TimeoutError:
            failures.append(f"shutdown: not complete after {SHUTDOWN_BOUND_SECONDS} s")
        except Exception as exc:
            failures.append(f"shutdown: raised {exc!r}")


def report(failures: list[str]) -> str:
    return f"{len(failures)} failures:\n\n" + "\n\n".join(f"- {failure}" for failure in failures)


# -- the tests ---------------------------------------------------------------------------------------------


async def test_hostile_json_rpc_and_slash_requests_leave_the_gateway_whole(tmp_path: Path) -> None:
    failures: list[str] = []
    log = StormLog()
    async with hostile_target(tmp_path, failures) as (linked, credentials):

        def storm() -> list[str]:
            with httpx.Client(base_url=linked.url, timeout=REQUEST_TIMEOUT_SECONDS) as client:

                def send_and_check(request: HostileRequest) -> list[Violation]:
                    answer = exchange(client, request, log)
                    if isinstance(answer, Violation):
                        return [answer]
                    return gateway_answer_violations(request, answer, credentials, log)

                return storm_then_shrink(gateway_requests(credentials), send_and_check, max_examples=1_500)

        await storm_from_a_thread(log, failures, storm)
        ordinary = await ordinary_call(linked, credentials, failures)
        await check_ledger(linked, log, ordinary, failures)
        await check_audit_log(linked, credentials, failures)
        await check_gateway_endpoints(linked, failures)
    assert not failures, report(failures)


async def test_thousands_of_distinct_method_names_keep_metrics_small(tmp_path: Path) -> None:
    """The issue: 20,000 method names sent without a token grew /metrics to 479 MB."""
    failures: list[str] = []
    log = StormLog()
    async with hostile_target(tmp_path, failures) as (linked, credentials):
        names_sent: set[str] = set()

        def storm() -> list[str]:
            with httpx.Client(base_url=linked.url, timeout=REQUEST_TIMEOUT_SECONDS) as client:

                def send_and_check(name_and_token: tuple[str, bool]) -> list[Violation]:
                    name, with_token = name_and_token
                    method = f"{name}#{len(names_sent)}"  # distinct: hypothesis draws many names alike
                    names_sent.add(method)
                    headers = [("content-type", b"application/json")]
                    if with_token:
                        headers.append(("authorization", f"Bearer {credentials.agent_token}".encode()))
                    request = HostileRequest("POST", "/mcp/rpc", encoded(
                        {"jsonrpc": "2.0", "method": method, "id": len(names_sent)}), headers)
                    answer = exchange(client, request, log)
                    if isinstance(answer, Violation):
                        return [answer]
                    return gateway_answer_violations(request, answer, credentials, log)

                return storm_then_shrink(st.tuples(st.text(max_size=30), st.booleans()), send_and_check,
                                         max_examples=2_500)

        await storm_from_a_thread(log, failures, storm)
        if len(names_sent) < 2_000:
            failures.append(f"the storm sent only {len(names_sent)} distinct method names")
        ordinary = await ordinary_call(linked, credentials, failures)
        await check_ledger(linked, log, ordinary, failures)
        await check_gateway_endpoints(linked, failures)
    assert not failures, report(failures)


ORCHESTRATOR_TEXT = weighted((6, st.text(max_size=20)), (1, ODD_TEXT), (1, HUGE_TEXT))
# httpx refuses URLs over 64 KiB: huge ids and queries stay under that once percent-encoded.
PATH_TEXT = weighted((3, st.text(max_size=20)), (1, ODD_TEXT),
                     (1, st.sampled_from(["x" * 8_000, "é" * 2_000, "\ud800" * 1_000])))


@dataclass(frozen=True)
class OrchestratorCall:
    request: HostileRequest
    with_operator_token: bool
    route_matches: bool  # False: a path that names no route (an agent id that is empty or has a "/")

    def __repr__(self) -> str:
        return repr(self.request)


@st.composite
def orchestrator_calls(draw: st.DrawFn, credentials: Credentials, pending_request_ids: list[str]) -> OrchestratorCall:
    # Mostly with it: the routes' own handling is reached only past the token check.
    with_operator_token = draw(weighted((2, st.just(True)), (1, st.just(False))))
    headers = [("content-type", b"application/json")]
    if with_operator_token:
        headers.append(("authorization", f"Bearer {credentials.operator_token}".encode()))
    else:
        odd = draw(st.one_of(st.none(), st.sampled_from([
            f"Bearer {credentials.agent_token}".encode(), b"Bearer", b"Bearer mcpo_" + b"A" * 43,
            f"Basic {credentials.operator_token}".encode(), credentials.operator_token.encode(),
            b"Bearer " + b"a" * 65_536])))
        if odd is not None:
            headers.append(("authorization", odd))
    note = "; ".join(header_note(name, value, credentials) for name, value in headers if name != "content-type")
    route = draw(weighted((3, st.just("request")), (3, st.just("respond")), (1, st.just("pending")),
                          (2, st.just("permissions")), (1, st.just("history"))))
    body_kind = "json"
    content: bytes | None = None
    route_matches = True
    if route in ("request", "respond"):
        method, path = "POST", f"/api/mcp/permission-{route}"
        if route == "request":
            shaped = some_keys({
                "agent_id": (95, weighted((6, st.just(credentials.agent_id)), (1, ORCHESTRATOR_TEXT),
                                          (1, JSON_VALUES))),
                # Many services: requests are deduplicated per agent and service while pending.
                "service_name": (90, mostly(weighted((2, st.sampled_from(["echo", "coolify", "github"])),
                                                     (1, st.text(min_size=1, max_size=20))))),
                "reason": (95, mostly(ORCHESTRATOR_TEXT, 8)),
                "timestamp": (95, mostly(st.sampled_from(["2025-11-06T10:30:00.000Z", "yesterday", ""]), 8)),
                "operation": (50, mostly(st.sampled_from(["echo", "wipe"]))),
                "params_preview": (40, weighted((3, JSON_VALUES), (1, LONE_SURROGATE_TEXT))),
                "risk": (40, mostly(st.sampled_from(["read", "write", "destructive"]))),
                "args_hash": (20, mostly(ORCHESTRATOR_TEXT)),
            })
        else:
            # A request the storm filed and did not decide yet, so that many answers decide a pending request.
            recent = draw(st.integers(1, 3))
            request_id = pending_request_ids[-min(recent, len(pending_request_ids))] if pending_request_ids else "perm_"
            shaped = some_keys({
                "request_id": (95, weighted((6, st.just(request_id)), (1, ORCHESTRATOR_TEXT), (1, JSON_VALUES))),
                "approved": (95, mostly(weighted((2, st.just(True)), (1, st.just(False))), 8)),
                "reason": (50, mostly(ORCHESTRATOR_TEXT, 8)),
                "scope": (50, mostly(st.sampled_from(["once", "service", "operation"]), 8)),
                # Far expiries: a grant must stay readable whatever its end (year 33715, or never).
                "expires_in_seconds": (60, mostly(weighted((1, st.floats(1, 1e6)), (1, st.sampled_from([1e12, 1e308]))),
                                                  8)),
                "decided_by": (30, mostly(ORCHESTRATOR_TEXT, 8)),
            })
        body_kind = draw(weighted((10, st.just("json")), (1, st.just("not-json")), (1, st.just("non-finite")),
                                  (1, st.just("deep"))))
        if body_kind == "json":
            content = encoded(draw(weighted((6, shaped), (1, JSON_VALUES))))
        elif body_kind == "non-finite":
            placed = draw(shaped)
            placed[draw(st.sampled_from(["expires_in_seconds", "approved", "timestamp"]))] = draw(NON_FINITE_NUMBERS)
            content = json.dumps(placed).encode()
        else:
            content = draw(NOT_JSON if body_kind == "not-json" else DEEP_BODIES)
    else:
        method = "GET"
        query = urllib.parse.quote(draw(weighted((3, PATH_TEXT), (1, st.sampled_from(
            ["pending", "1", "-1", "1e9", "٣", "9" * 5_000])))), safe="", errors="surrogatepass")
        if route == "pending":
            path = "/api/mcp/permission-requests" + draw(st.sampled_from(["", f"?status={query}"]))
        elif route == "history":
            path = f"/api/mcp/permission-history?limit={query}"
        else:
            agent_id = draw(weighted((2, st.just(credentials.agent_id)), (3, PATH_TEXT), (1, st.sampled_from(
                ["nosuch", "%00", "a/b", "-leading-dash", "x" * 129, "agent_\x00", " ", "\ud800", "$(id)"]))))
            path = f"/api/agent/{urllib.parse.quote(agent_id, safe='', errors='surrogatepass')}/mcp-permissions"
            # httpx resolves "." and ".." segments; the server decodes %2F before routing.
            route_matches = agent_id not in ("", ".", "..") and "/" not in agent_id
    request = HostileRequest(method, path, content, headers, body_kind, note)
    return OrchestratorCall(request, with_operator_token, route_matches)


def orchestrator_answer_violations(call: OrchestratorCall, response: httpx.Response, credentials: Credentials,
                                   log: StormLog) -> list[Violation]:
    status = response.status_code
    _, not_json = json_answer(response)
    answer, kind = excerpt(response), f"{call.request.method} {call.request.path.split('?')[0][:40]}: HTTP {status}"
    violations = [not_json] if not_json else []
    if status >= 500:
        violations.append(Violation("no 5xx from the orchestrator", answer, kind))
    if not call.with_operator_token and not (status == 401 or (status == 404 and not call.route_matches)):
        violations.append(Violation("401 without the operator token", answer, kind))
    if credentials.agent_token in response.text or credentials.operator_token in response.text:
        violations.append(Violation("no token in an answer", answer, kind))
    return log.note(call.request, violations)


def note_pending_requests(call: OrchestratorCall, answer: httpx.Response, pending_request_ids: list[str]) -> None:
    """Keeps the ids of the requests the storm filed and no answer decided yet."""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        if call.request.path.endswith("permission-request") and answer.status_code == 200:
            request_id = str(answer.json()["request_id"])
            if request_id not in pending_request_ids:
                pending_request_ids.append(request_id)
        elif call.request.path.endswith("permission-respond") and answer.status_code in (200, 409):
            decided = json.loads(call.request.content or b"")["request_id"]
            if decided in pending_request_ids:
                pending_request_ids.remove(decided)


async def test_hostile_orchestrator_requests_leave_the_orchestrator_whole(tmp_path: Path) -> None:
    failures: list[str] = []
    log = StormLog()
    async with hostile_target(tmp_path, failures) as (linked, credentials):
        pending_request_ids: list[str] = []

        def storm() -> list[str]:
            with httpx.Client(base_url=linked.orchestrator_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:

                def send_and_check(call: OrchestratorCall) -> list[Violation]:
                    answer = exchange(client, call.request, log)
                    if isinstance(answer, Violation):
                        return [answer]
                    note_pending_requests(call, answer, pending_request_ids)
                    return orchestrator_answer_violations(call, answer, credentials, log)

                return storm_then_shrink(orchestrator_calls(credentials, pending_request_ids), send_and_check,
                                         max_examples=800)

        await storm_from_a_thread(log, failures, storm)
        async with httpx.AsyncClient(base_url=linked.orchestrator_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
            permissions = await client.get(f"/api/agent/{credentials.agent_id}/mcp-permissions",
                                           headers={"authorization": f"Bearer {credentials.operator_token}"})
        try:
            assert "echo" in permissions.json()["allowed_mcps"]
        except (ValueError, KeyError, TypeError, AssertionError):
            failures.append(f"the agent's permissions after the storm: {excerpt(permissions)}")
        ordinary = await ordinary_call(linked, credentials, failures)
        await check_ledger(linked, log, ordinary, failures)
        await check_audit_log(linked, credentials, failures)
        await check_gateway_endpoints(linked, failures)
    assert not failures, report(failures)
