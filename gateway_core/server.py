"""The HTTP side: routes of gateway-protocol.md on Starlette, served by uvicorn, standalone or as a task
inside another asyncio loop (the console's)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import platform
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway_core import __version__
from gateway_core.clock import iso_utc
from gateway_core.errors import GatewayError, InternalError, InvalidRequest
from gateway_core.gateway import Gateway
from gateway_core.http_edge import (
    BODY_READ_SECONDS,
    MAX_HEADER_BYTES,
    BodyTooLarge,
    BodyTooSlow,
    HeadersTooLarge,
    caller_of,
    check_header_size,
    read_body,
)
from gateway_core.json_bytes import json_bytes
from gateway_core.lazy_import import import_in_thread
from gateway_core.models import (
    RPC_BODY_METHOD,
    SLASH_METHOD,
    Health,
    Info,
    InfoCounts,
    LedgerCheck,
    LinkCheck,
    Readiness,
    ReadyChecks,
    ServicesCheck,
    StoreCheck,
    error_envelope,
)
from gateway_core.operator_routes import operator_routes
from gateway_core.rpc import Caller, JsonRpcEndpoint, Reply, RequestAuthentication
from gateway_core.store import StoreError
from gateway_core.watchdog import ExitWatchdog

if TYPE_CHECKING:
    from gateway_core.mcp_front_door import McpFrontDoor

log = logging.getLogger(__name__)
T = TypeVar("T")


GRACEFUL_SHUTDOWN_SECONDS = 5  # what is in flight when a server stops gets this long to be answered
# An idle keep-alive connection is kept longer than clients keep theirs (httpx 5 s, aiohttp 15 s; nginx serves
# 75 s): at uvicorn's 5 s a client reusing one as the server closed it would see its call fail.
KEEP_IDLE_CONNECTION_SECONDS = 75


def _json(status: int, body: Any) -> Response:
    if body is None:
        return Response(status_code=204)
    # A refused body or header block is not read any further: closing the connection is how to stop it (and a
    # body too slow to come must not keep its connection: every byte would restart uvicorn's idle timer).
    headers = {"connection": "close"} if status in (408, 413, 431) else None
    return Response(json_bytes(body), status, headers,
                    media_type="application/json")


FIRST_HEALTH_ROUND_WAIT_SECONDS = 1.0


class McpRoute:
    """The ASGI object at `/mcp`: the MCP front door (gateway_core/mcp_front_door.py), loaded while the server
    runs. The SDK takes about a second to import, so it is imported on a worker thread once serving starts and
    the first health checks are done: nothing waits for it (not the console's first frame, nor the legacy
    routes), and the event loop never stops for it. A request that comes before it is loaded waits for it."""

    def __init__(self, gateway: Gateway, bound_host: str) -> None:
        self._gateway = gateway
        self._bound_host = bound_host
        self._front_door: McpFrontDoor | None = None
        self._loaded = asyncio.Event()
        self._stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Loads the front door and runs its session manager (in a task of its own) for as long as this lasts."""
        task = asyncio.create_task(self._run(), name="mcp-front-door")
        try:
            yield
        finally:
            self._stopping.set()
            if not self._loaded.is_set():
                task.cancel()  # still importing: the thread finishes on its own, nobody needs it now
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # Not before the gateway's first health checks (or a second): the import's second of CPU would be in
        # every latency they measure, as if the upstreams were slow.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_HEALTH_ROUND_WAIT_SECONDS):
                await self._gateway.health.first_round_done.wait()
        try:
            [module] = await import_in_thread("gateway_core.mcp_front_door")
            front_door: McpFrontDoor = module.McpFrontDoor(self._gateway, self._bound_host)
            async with front_door.run():
                self._front_door = front_door
                self._loaded.set()
                await self._stopping.wait()
        except Exception:
            log.exception("the MCP front door could not start: /mcp answers 503")
        finally:
            self._front_door = None
            self._loaded.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._front_door is None:
            await self._loaded.wait()
        if self._front_door is None:
            error = InternalError("The MCP front door is not running")
            await _json(503, error_envelope(None, error))(scope, receive, send)
            return
        await self._front_door(scope, receive, send)


def create_app(gateway: Gateway, mcp_route: McpRoute | None = None) -> Starlette:
    """The gateway's HTTP app; `mcp_route` serves `/mcp` (the MCP front door), where there is one."""
    endpoint = JsonRpcEndpoint(gateway)
    limit = gateway.settings.server.max_body_bytes

    def rpc_route(handler: Callable[[bytes, Caller], Awaitable[Reply]], method: str) -> Callable[
        [Request], Awaitable[Response]
    ]:
        async def route(request: Request) -> Response:
            started = time.perf_counter()
            try:
                check_header_size(request)
                body = await read_body(request, limit)
                status, reply = await handler(body, caller_of(request))
            except HeadersTooLarge:
                error = InvalidRequest(f"Request headers too large: the limit is {MAX_HEADER_BYTES} bytes")
                status, reply = endpoint.refuse(error, started, method=method)
                status = 431
            except BodyTooLarge:
                error = InvalidRequest(f"Request body too large: the limit is {limit} bytes")
                status, reply = endpoint.refuse(error, started, method=method)
                status = 413
            except BodyTooSlow:
                error = InvalidRequest(f"Request body not received within {BODY_READ_SECONDS:g} s")
                status, reply = endpoint.refuse(error, started, method=method)
                status = 408
            except Exception:
                correlation_id = uuid.uuid4().hex[:12]
                log.exception("internal error %s on %s", correlation_id, request.url.path)
                status, reply = endpoint.refuse(
                    InternalError(f"Internal error (correlation id {correlation_id})",
                                  {"correlationId": correlation_id}), started, method=method)
            return _json(status, reply)

        return route

    def authenticated(view: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            try:
                check_header_size(request)
            except HeadersTooLarge:
                error = InvalidRequest(f"Request headers too large: the limit is {MAX_HEADER_BYTES} bytes")
                return _json(431, error_envelope(None, error))
            try:
                RequestAuthentication(gateway, caller_of(request)).agent_id()
                return _json(200, view(request))
            except GatewayError as error:
                return _json(error.http_status, error_envelope(None, error))

        return route

    async def health(request: Request) -> Response:
        return _json(200, Health(timestamp=iso_utc(gateway.clock()), version=__version__).model_dump())

    async def ready(request: Request) -> Response:
        try:
            await gateway.store.check_writable()
            store = StoreCheck(ok=True, path=gateway.store.path.name)
        except StoreError as exc:
            store = StoreCheck(ok=False, error=str(exc))
        recorder = gateway.recorder
        link = gateway.link_state
        checks = ReadyChecks(
            store=store,
            ledger=LedgerCheck(ok=recorder.healthy, pendingRows=recorder.pending,
                               lagSeconds=round(recorder.lag_seconds, 3), rowsSetAside=recorder.set_aside,
                               error=recorder.failing),
            orchestrator=(LinkCheck(ok=True, state="not linked") if link is None else
                          LinkCheck(ok=link.status == "connected", state=link.describe())),
            services=ServicesCheck(status={name: gateway.service_status(name) for name in gateway.catalog.names()}))
        readiness = Readiness(status="ready" if checks.ok else "not_ready", timestamp=iso_utc(gateway.clock()),
                              checks=checks)
        return _json(200 if checks.ok else 503, readiness.model_dump(exclude_none=True))

    async def info(request: Request) -> Response:
        configured = [name for name, state in gateway.services.items() if state.handler is not None]
        return _json(200, Info(
            version=__version__, uptimeSeconds=round(gateway.uptime_seconds, 3), python=platform.python_version(),
            counts=InfoCounts(services=len(gateway.services), configuredServices=len(configured),
                              activeAgents=gateway.authenticator.active_agent_count,
                              callsSinceStart=gateway.usage.since_start.calls)).model_dump())

    async def metrics(request: Request) -> Response:
        return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(request: Request, exc: Exception) -> Response:
        return _json(404, {"error": "Not Found", "message": f"Route {request.method} {request.url.path} not found"})

    routes = [  # the hot routes first: Starlette tries them in order
        Route("/mcp/rpc", rpc_route(endpoint.handle, RPC_BODY_METHOD), methods=["POST"]),
        # An ASGI object, not a function (Starlette would wrap a function as request → response).
        # "/mcp/" too: MCP clients are configured with either, and no route redirects (see below).
        *([Route(path, mcp_route, methods=["GET", "POST", "DELETE"]) for path in ("/mcp", "/mcp/")]
          if mcp_route is not None else []),
        Route("/mcp/execute", rpc_route(endpoint.handle_slash, SLASH_METHOD), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/mcp/catalog", authenticated(lambda request: gateway.catalog_listing().model_dump()),
              methods=["GET"]),
        Route("/mcp/service/{name}",
              authenticated(lambda request: gateway.describe_service(request.path_params["name"]).model_dump()),
              methods=["GET"]),
        *operator_routes(gateway, limit),
    ]
    # A known path with another method is still "no such route" to a client (gateway-protocol.md).
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {404: not_found, 405: not_found}
    app = Starlette(routes=routes, exception_handlers=handlers)
    # Starlette answers /mcp/rpc/ with a 307 to /mcp/rpc (an empty body; a client following it posts again):
    # the contract answers any route it does not list with the 404 above.
    app.router.redirect_slashes = False
    return app


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_done = asyncio.Event()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_done.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals belong to whoever runs us (the CLI or the console), which then stops us cleanly.
        yield


class CannotListen(OSError):
    """A port that cannot be listened on, named (the console binds two: which one is taken matters)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.port = port


class HttpServer:
    """uvicorn serving an ASGI app inside the current event loop. The socket is bound (and listening) at
    construction, so a busy port is an OSError here rather than an exit inside uvicorn, and port 0 is
    known at once."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self._socket = socket.socket(family, kind, proto)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind(address)
            # Listening at once: a client that connects before uvicorn accepts waits in the backlog
            # instead of being refused (the gateway's own feed to the orchestrator beside it, at start).
            self._socket.listen(2048)
        except OSError as exc:
            self._socket.close()
            raise CannotListen(host, port, exc.strerror or str(exc)) from None
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False,
                                proxy_headers=False, ws="websockets-sansio",
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                                timeout_keep_alive=KEEP_IDLE_CONNECTION_SECONDS)
        self._server = _Server(config)
        self._serving = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def serve(self) -> None:
        """Serves until stop(); in-flight requests are answered before it returns."""
        self._serving = True
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()

    async def wait_started(self) -> bool:
        """Waits until requests are accepted; False when start-up failed."""
        await self._server.startup_done.wait()
        return bool(self._server.started)

    def stop(self) -> None:
        self._server.should_exit = True
        if not self._serving:  # never served: nobody else will close the socket
            self._socket.close()


class GatewayServer(HttpServer):
    """The gateway's routes, the MCP front door at `/mcp` among them."""

    def __init__(self, gateway: Gateway, host: str, port: int) -> None:
        self.mcp_route = McpRoute(gateway, host)
        super().__init__(create_app(gateway, self.mcp_route), host, port)

    async def serve(self) -> None:
        # uvicorn runs without lifespan: the front door's session manager runs around its serve() here.
        async with self.mcp_route.running():
            await super().serve()


STOP_DEADLINE_SECONDS = 10.0  # from a stop signal to the process gone, whatever hangs


async def serve_until_signalled(
    servers: list[HttpServer], cleanup: Callable[[], Awaitable[None]],
    on_listening: Callable[[], None] | None = None, on_stop: Callable[[], None] | None = None,
    on_reload: Callable[[], None] | None = None,
) -> int:
    """Serves until SIGINT or SIGTERM; then `on_stop` (which answers held calls), the servers answer what
    is in flight, and `cleanup` runs (which flushes the ledger). Whatever hangs, the process is gone
    within STOP_DEADLINE_SECONDS of the signal. SIGHUP calls `on_reload`, where there is one (else it
    stops too). Returns the process exit code."""
    loop = asyncio.get_running_loop()
    watchdog = ExitWatchdog(STOP_DEADLINE_SECONDS)

    def stop_all() -> None:
        if on_stop is not None:
            on_stop()
        for server in servers:
            server.stop()

    def signalled(signum: signal.Signals) -> None:
        log.info("%s received: stopping", signum.name)
        watchdog.arm(signum.name)
        stop_all()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, signalled, signum)
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, on_reload)
    try:
        serving = [asyncio.create_task(server.serve()) for server in servers]
        started = [await server.wait_started() for server in servers]
        if not all(started):
            stop_all()
            await asyncio.gather(*serving, return_exceptions=True)
            return 1
        if on_listening is not None:
            on_listening()
        gc.freeze()  # what start-up built lives as long as the process: keep it out of every collection's scan
        await asyncio.gather(*serving)
    finally:
        await cleanup()
        log.info("stopped; ledger flushed")
    return 0


def new_fast_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop where uvloop is installed (it comes with uvicorn[standard]), else asyncio's: the
    gateway spends a good part of each call in the event loop itself."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_fast(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on the fastest loop at hand."""
    with asyncio.Runner(loop_factory=new_fast_loop) as runner:
        return runner.run(main)
