"""A trivial upstream (a real HTTP server on loopback) and the handler that calls it.

Tests and `bench/` use it where they need a service whose behaviour they control."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Self

from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway_core.catalog import ServiceSpec
from gateway_core.clock import Clock
from gateway_core.config import Settings
from gateway_core.errors import ServiceUnavailable
from gateway_core.handlers import ServiceHandler
from gateway_core.health import HealthReport
from gateway_core.operations import Operation, OperationArgs, OperationTable
from gateway_core.ratelimit import RateLimit
from gateway_core.upstream import UpstreamClient, UpstreamConnectionError

ECHO_SPEC = ServiceSpec("echo", "server", False, 100, 0.0003, RateLimit(max_requests=100_000, window_ms=60_000),
                        "A test upstream that echoes")


class EchoArgs(OperationArgs):
    message: str = Field(min_length=1)
    times: int = Field(1, ge=1, le=10)


class WipeArgs(OperationArgs):
    target: str


class NapArgs(OperationArgs):
    seconds: float = Field(ge=0, le=60)


class FreeArgs(OperationArgs):
    pass


def create_echo_upstream() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"echo": body["message"] * body.get("times", 1)})

    async def nap(request: Request) -> JSONResponse:
        seconds = float(request.query_params["seconds"])
        await asyncio.sleep(seconds)
        return JSONResponse({"slept": seconds})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[
        Route("/echo", echo, methods=["POST"]),
        Route("/nap", nap, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/wipe", health, methods=["POST"]),
    ])


class EchoHandler(ServiceHandler):
    service = "echo"
    operations = OperationTable([
        Operation("echo", EchoArgs, "read", "Echo a message back"),
        Operation("wipe", WipeArgs, "destructive", "Pretend to wipe something"),
        Operation("nap", NapArgs, "read", "Sleep upstream for a while"),
        Operation("free", FreeArgs, "read", "Costs nothing", tokens=0, cost_usd=0.0),
    ])

    def __init__(self, base_url: str) -> None:
        self.client = UpstreamClient(base_url)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> Self:
        raise NotImplementedError("the echo handler is built by tests with its upstream's address")

    async def execute(self, operation: Operation, args: OperationArgs) -> dict[str, Any]:
        try:
            if isinstance(args, EchoArgs):
                response = await self.client.request("POST", "/echo", json_body=args.model_dump())
            elif isinstance(args, NapArgs):
                response = await self.client.request("GET", "/nap", params={"seconds": str(args.seconds)})
            else:
                response = await self.client.request("POST", "/wipe", json_body=args.model_dump())
        except UpstreamConnectionError as exc:
            raise ServiceUnavailable(f"echo upstream unreachable: {exc}") from None
        return dict(response.json())

    async def health(self) -> HealthReport:
        started = time.perf_counter()
        response = await self.client.request("GET", "/health")
        status = "healthy" if response.status == 200 else "down"
        return HealthReport(status, (time.perf_counter() - started) * 1000)

    async def aclose(self) -> None:
        await self.client.aclose()
