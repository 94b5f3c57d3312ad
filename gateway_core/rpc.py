"""JSON-RPC 2.0 over the gateway: envelopes, batches, notifications, methods, and the slash form."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway_core.auth import CredentialRefused
from gateway_core.errors import GatewayError, InvalidParams, InvalidRequest, MethodNotFound, ParseError
from gateway_core.gateway import ExecuteOutcome, Gateway
from gateway_core.models import (
    RPC_METHODS,
    SLASH_METHOD,
    ExecuteOptions,
    ExecuteParams,
    JsonRpcRequest,
    Listing,
    ServiceParams,
    SlashRequest,
    error_envelope,
    parse_json,
    success_envelope,
)
from gateway_core.slash import parse_slash_command

Reply = tuple[int, Any]  # HTTP status and the JSON body (None: no body, 204)
@dataclass(frozen=True, slots=True)
class Caller:
    """The credentials and address an HTTP request came with."""

    authorization: str | None
    agent_header: str | None
    remote: str | None


class RequestAuthentication:
    """Authenticates one HTTP request's credentials once (batches share it) and audits a refusal once."""

    def __init__(self, gateway: Gateway, caller: Caller) -> None:
        self._gateway = gateway
        self._caller = caller
        self._agent_id: str | None = None
        self._refusal: CredentialRefused | None = None

    def agent_id(self) -> str:
        if self._agent_id is None and self._refusal is None:
            try:
                agent = self._gateway.authenticator.authenticate(self._caller.authorization,
                                                                 self._caller.agent_header)
                self._agent_id = agent.id
            except CredentialRefused as refusal:
                self._refusal = refusal
                self._gateway.recorder.record_audit(refusal.audit_event(self._caller.remote, self._gateway.clock()))
        if self._refusal is not None:
            raise self._refusal
        assert self._agent_id is not None
        return self._agent_id


def _params(model: type[BaseModel], params: Any, method: str) -> Any:
    if not isinstance(params, dict):
        raise InvalidParams(f"{method} takes its params as an object",
                            {"errors": [{"field": "params", "message": "must be an object"}]})
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
                  for e in exc.errors(include_input=False, include_url=False)]
        listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidParams(f"Invalid params for {method}: {listed}", {"errors": errors}) from None


def _rpc_id_text(rpc_id: Any) -> str | None:
    return None if rpc_id is None else str(rpc_id)


class JsonRpcEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._methods: dict[str, Callable[[str, JsonRpcRequest], Awaitable[Any]]] = dict(zip(
            RPC_METHODS, (self._execute, self._list_services, self._get_capabilities, self._get_statistics),
            strict=True))

    async def handle(self, body: bytes, caller: Caller) -> Reply:
        started = time.perf_counter()
        try:
            payload = parse_json(body)
        except ParseError as error:
            return self.refuse(error, started)
        authentication = RequestAuthentication(self.gateway, caller)
        if isinstance(payload, list):
            if not payload:
                return self.refuse(InvalidRequest("Invalid Request: an empty batch"), started)
            replies = await asyncio.gather(*(self._one(item, authentication) for item in payload))
            bodies = [reply_body for _, reply_body in replies if reply_body is not None]
            return (200, bodies) if bodies else (204, None)
        return await self._one(payload, authentication)

    def refuse(self, error: GatewayError, started: float, rpc_id: Any = None, method: object = None) -> Reply:
        """Answers a request refused before it reached a method, and writes its ledger row."""
        self.gateway.record(agent_id=None, method=method, status="error", error_code=error.code, started=started,
                            rpc_id=_rpc_id_text(rpc_id), via="slash" if method == SLASH_METHOD else "rpc")
        return error.http_status, error_envelope(rpc_id, error)

    async def _one(self, item: Any, authentication: RequestAuthentication) -> Reply:
        started = time.perf_counter()
        try:
            request = JsonRpcRequest.model_validate(item)
        except ValidationError:
            rpc_id = item.get("id") if isinstance(item, dict) else None
            valid_id = rpc_id if isinstance(rpc_id, str | int | float) and not isinstance(rpc_id, bool) else None
            return self.refuse(InvalidRequest("Invalid Request: not a JSON-RPC 2.0 request object"), started,
                               valid_id, item.get("method") if isinstance(item, dict) else None)
        agent_id: str | None = None
        try:
            agent_id = authentication.agent_id()
            method = self._methods.get(request.method)
            if method is None:
                raise MethodNotFound(f"Method {request.method} not found")
            result = await method(agent_id, request)
        except GatewayError as error:
            service = request.params.get("service") if isinstance(request.params, dict) else None
            self.gateway.record(agent_id=agent_id, method=request.method, service=service, status="error",
                                error_code=error.code, started=started, rpc_id=_rpc_id_text(request.id))
            return self._reply(request, error.http_status, error_envelope(request.id, error))
        if isinstance(result, ExecuteOutcome):  # the pipeline wrote its own ledger row
            if result.error is not None:
                return self._reply(request, result.error.http_status, error_envelope(request.id, result.error))
            assert result.result is not None
            return self._reply(request, 200, success_envelope(request.id, result.result.wire()))
        self.gateway.record(agent_id=agent_id, method=request.method, status="success", started=started,
                            rpc_id=_rpc_id_text(request.id))
        return self._reply(request, 200, success_envelope(request.id, result))

    @staticmethod
    def _reply(request: JsonRpcRequest, status: int, body: dict[str, Any]) -> Reply:
        return (204, None) if request.is_notification else (status, body)

    async def _execute(self, agent_id: str, request: JsonRpcRequest) -> ExecuteOutcome:
        params: ExecuteParams = _params(ExecuteParams, request.params, request.method)
        return await self.gateway.execute(agent_id, params, _rpc_id_text(request.id))

    async def _list_services(self, agent_id: str, request: JsonRpcRequest) -> Any:
        return Listing(data=self.gateway.service_summaries()).model_dump(mode="json")

    async def _get_capabilities(self, agent_id: str, request: JsonRpcRequest) -> Any:
        params: ServiceParams = _params(ServiceParams, request.params, request.method)
        return Listing(data=self.gateway.capabilities(params.service)).model_dump(mode="json")

    async def _get_statistics(self, agent_id: str, request: JsonRpcRequest) -> Any:
        return Listing(data=self.gateway.statistics()).model_dump(mode="json")

    async def handle_slash(self, body: bytes, caller: Caller) -> Reply:
        """`POST /mcp/execute`: the slash form, answered with the same envelope as mcp.execute."""
        started = time.perf_counter()
        try:
            payload = parse_json(body)
        except ParseError as error:
            return self.refuse(error, started, method=SLASH_METHOD)
        try:
            request = SlashRequest.model_validate(payload)
        except ValidationError:
            return self.refuse(InvalidRequest('Invalid Request: expected {"command": "/mcp-<service> ..."}'),
                               started, method=SLASH_METHOD)
        agent_id: str | None = None
        try:
            agent_id = RequestAuthentication(self.gateway, caller).agent_id()
            command = parse_slash_command(request.command, self.gateway.catalog, self.gateway.operations_of)
        except GatewayError as error:
            self.gateway.record(agent_id=agent_id, method=SLASH_METHOD, status="error", error_code=error.code,
                                started=started, rpc_id=_rpc_id_text(request.id), via="slash")
            return error.http_status, error_envelope(request.id, error)
        options = (ExecuteOptions.model_validate({**request.options.model_dump(), **command.defaults})
                   if command.defaults else request.options)
        params = ExecuteParams(service=command.service, operation=command.operation, args=command.args,
                               options=options)
        outcome = await self.gateway.execute(agent_id, params, _rpc_id_text(request.id), method=SLASH_METHOD,
                                             via="slash")
        if outcome.error is not None:
            return outcome.error.http_status, error_envelope(request.id, outcome.error)
        assert outcome.result is not None
        return 200, success_envelope(request.id, outcome.result.wire())
