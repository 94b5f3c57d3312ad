"""Wire models: what agents send, validated at the edge, and the envelopes we answer with."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from gateway_core.errors import GatewayError, ParseError

JsonRpcId = StrictStr | StrictInt | StrictFloat | None

MAX_JSON_DEPTH = 100  # deeper than any operation's arguments; far below Python's recursion limit


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (iteratively: the value may be deeper than the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a decoded string a surrogate in a pair is one character


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a string in `value` (a key or a value, however deep) holds a surrogate not in a pair. JSON can
    write one (`\\ud800`) but no UTF-8 text can carry it (I-JSON forbids it): an MCP server's pipe, PostgreSQL,
    an operator's screen and our own JSON encoders would each fail on it, wherever it went."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


PARSE_ERROR = "Parse error"


def parse_json(body: bytes) -> Any:
    """The body as JSON, or ParseError: not JSON, NaN or Infinity (not JSON either), nested deeper than
    MAX_JSON_DEPTH, or holding a lone surrogate."""
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ParseError(f"{PARSE_ERROR}: not valid JSON (NaN and Infinity are not JSON either)") from None
    # Fewer brackets than the limit cannot nest deeper than it: the usual body skips the walk.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _depth(payload) > MAX_JSON_DEPTH:
        raise ParseError(f"{PARSE_ERROR}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    # Only an escape makes one (raw surrogate bytes are no UTF-8): the usual body skips the walk.
    if (b"\\ud" in body or b"\\uD" in body) and holds_lone_surrogate(payload):
        raise ParseError(f"{PARSE_ERROR}: a string holds a lone surrogate (an unpaired \\ud800-\\udfff escape), "
                         "which is no text")
    return payload


def parse_json_text(text: str, what: str) -> Any:
    """JSON written inside something else (the slash form's, a console field's), taken as the door takes a
    body: ValueError naming `what` and saying why not."""
    try:
        return parse_json(text.encode(errors="surrogatepass"))
    except ParseError as exc:
        raise ValueError(f"{what} is not JSON the gateway takes: {exc.message.removeprefix(PARSE_ERROR + ': ')}") \
            from None


RPC_METHODS = ("mcp.execute", "mcp.listServices", "mcp.getCapabilities", "mcp.getStatistics")
SLASH_METHOD = "slash"  # the ledger's method for the slash form (POST /mcp/execute)
RPC_BODY_METHOD = "rpc"  # the ledger's method for a /mcp/rpc body refused before it was read
OPERATOR_METHOD = "console.execute"  # the ledger's method for an operator's own call
RECORDED_METHODS = (*RPC_METHODS, SLASH_METHOD, RPC_BODY_METHOD, OPERATOR_METHOD)


class JsonRpcRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    jsonrpc: Literal["2.0"]
    method: StrictStr
    id: JsonRpcId = None
    params: dict[str, Any] | list[Any] | None = None

    @property
    def is_notification(self) -> bool:
        return "id" not in self.model_fields_set


class ExecuteOptions(BaseModel):
    """Per-call options; the operation may read the ones its argument model declares (force, limit...)."""

    model_config = ConfigDict(extra="allow")

    waitForApproval: float | None = Field(None, ge=0)


def _no_options(value: Any) -> Any:
    return {} if value is None else value


Options = Annotated[ExecuteOptions, BeforeValidator(_no_options)]  # "options": null is no options


class ExecuteParams(BaseModel):
    # Keys beside these are arguments too (existing clients send minio's `bucket` at the top): an operation takes
    # the ones its arguments declare, after `args` and `database`, before the options.
    model_config = ConfigDict(extra="allow")

    service: StrictStr = Field(min_length=1)
    operation: StrictStr = Field(min_length=1)
    args: list[Any] | dict[str, Any] | None = None
    database: StrictStr | None = None
    options: Options = Field(default_factory=ExecuteOptions)

    def argument_defaults(self) -> dict[str, Any]:
        """Values an operation may take from outside `args`: `database`, keys beside the params', the options."""
        defaults = dict(self.options.model_extra or {})
        defaults.update(self.model_extra or {})
        if self.database is not None:
            defaults["database"] = self.database
        return defaults


class ServiceParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    service: StrictStr = Field(min_length=1)


class SlashRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command: StrictStr = Field(min_length=1)
    options: Options = Field(default_factory=ExecuteOptions)
    id: JsonRpcId = None


# -- what mcp.execute answers ----------------------------------------------------------------------------


class CallMetadata(BaseModel):
    executionTime: int  # milliseconds
    tokensUsed: int
    cost: float  # USD
    service: str
    operation: str
    timestamp: str  # ISO-8601 UTC
    callId: str  # the ledger row's id
    database: str | None = None  # the database a call ran against (postgres); left out where there is none


class ExecuteResult(BaseModel):
    """A successful call's `result` (gateway-protocol.md): what the agent reads, and what the console shows."""

    status: Literal["success"] = "success"
    data: dict[str, Any]
    metadata: CallMetadata

    def wire(self) -> dict[str, Any]:
        """As sent: the upstream's data as it came (not walked again), the metadata serialised."""
        return {"status": self.status, "data": self.data, "metadata": self.metadata.model_dump(exclude_none=True)}


# -- what the listing methods answer (gateway-protocol.md: existing agents read `result.data`) ----------


class Pricing(BaseModel):
    avgTokensPerCall: int
    costPerCall: float


class ServiceSummary(BaseModel):
    """One item of mcp.listServices."""

    name: str
    version: str
    description: str
    location: str
    status: str
    capabilities: list[str]  # operation names
    alwaysActive: bool
    pricing: Pricing


class Capability(BaseModel):
    """One item of mcp.getCapabilities: an operation, its schema, risk and cost."""

    name: str
    description: str
    risk: str
    arguments: list[str]  # the positional order
    inputSchema: dict[str, Any]
    cost: Pricing


class HealthView(BaseModel):
    status: str
    checkedAt: float
    latencyMs: float | None
    message: str  # scrubbed: what an agent may read


class RateLimitView(BaseModel):
    maxRequests: int
    windowMs: int


class ServiceDescription(BaseModel):
    """GET /mcp/service/{name}, and each service of GET /mcp/catalog."""

    name: str
    description: str
    location: str
    alwaysActive: bool
    aliases: list[str]
    status: str
    missingSettings: list[str]
    health: HealthView | None
    pricing: Pricing
    rateLimit: RateLimitView
    operations: list[Capability]


class CatalogListing(BaseModel):
    services: list[ServiceDescription]
    count: int


class ServiceCount(BaseModel):
    name: str
    status: str
    location: str
    capabilities: int


class UsageSummary(BaseModel):
    since: str
    uptimeSeconds: float
    totals: dict[str, Any]
    byService: dict[str, dict[str, Any]]


class Statistics(BaseModel):
    """mcp.getStatistics: services by state (active: configured and not down; error: down), plus usage."""

    total: int
    active: int
    inactive: int
    error: int
    serverSide: int
    local: int
    services: list[ServiceCount]
    usage: UsageSummary


class Listing(BaseModel):
    status: Literal["success"] = "success"
    data: list[ServiceSummary] | list[Capability] | Statistics


# -- what the operational routes answer --------------------------------------------------------------


class Health(BaseModel):
    status: Literal["healthy"] = "healthy"
    timestamp: str
    version: str


class StoreCheck(BaseModel):
    ok: bool
    path: str | None = None  # the file's name, never its directory
    error: str | None = None


class LedgerCheck(BaseModel):
    ok: bool
    pendingRows: int
    lagSeconds: float
    rowsSetAside: int
    error: str | None = None


class LinkCheck(BaseModel):
    ok: bool
    state: str


class ServicesCheck(BaseModel):
    ok: bool = True  # a service down is reported, not a reason to take the gateway out of rotation
    status: dict[str, str]


class ReadyChecks(BaseModel):
    store: StoreCheck
    ledger: LedgerCheck
    orchestrator: LinkCheck
    services: ServicesCheck

    @property
    def ok(self) -> bool:
        return self.store.ok and self.ledger.ok and self.orchestrator.ok and self.services.ok


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    timestamp: str
    checks: ReadyChecks


class InfoCounts(BaseModel):
    services: int
    configuredServices: int
    activeAgents: int
    callsSinceStart: int


class Info(BaseModel):
    name: str = "mcp-console gateway"
    version: str
    uptimeSeconds: float
    python: str
    counts: InfoCounts


def success_envelope(rpc_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result}


def error_envelope(rpc_id: Any, error: GatewayError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": error.to_error_object()}
