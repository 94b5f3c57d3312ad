"""`mcp-console COMMAND`: the gateway headless (`serve`), agents, grants and the calls ledger from the shell.

`mcp-console` without a command is the console (console/cli.py), which hands commands to this module."""

from __future__ import annotations

import argparse
import csv
import errno
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from gateway_core import __version__
from gateway_core.auth import TokenHasher, create_agent, create_operator, open_token_hasher
from gateway_core.catalog import DEFAULT_CATALOG, Catalog
from gateway_core.clock import iso_utc
from gateway_core.config import ConfigError, Settings, load_settings
from gateway_core.handlers import HANDLER_CLASSES
from gateway_core.logs import configure_logging
from gateway_core.mcp_upstreams import upstream_specs
from gateway_core.orchestrator.embedded import EmbeddedOrchestrator
from gateway_core.runtime import open_runtime
from gateway_core.server import CannotListen, HttpServer, run_fast, serve_until_signalled
from gateway_core.store import Agent, Operator, SQLiteStore, StoreError

log = logging.getLogger("mcp_console")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """Bad command-line input: exit code 2 with the message."""


def parse_duration(text: str) -> float:
    """'90s', '30m', '1h', '1h30m', '2d' → seconds."""
    compact = text.replace(" ", "").lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != compact:
        raise UsageError(f"cannot read the duration {text!r}: use forms like 90s, 30m, 1h, 1h30m, 2d")
    seconds = sum(float(number) * _SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise UsageError("a duration must be longer than zero")
    return seconds


def _seconds(text: str) -> float:
    """A number of seconds given as an option (0 or more)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return seconds


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "db", None):
        overrides["store"] = {"path": Path(args.db)}
    keys = ("host",) if getattr(args, "port_is_orchestrator", False) else ("host", "port")
    server = {key: value for key in keys if (value := getattr(args, key, None)) is not None}
    if server:
        overrides["server"] = server
    if getattr(args, "orchestrator_url", None):
        overrides["orchestrator_url"] = args.orchestrator_url
    return load_settings(Path(args.config) if getattr(args, "config", None) else None, **overrides)


def _when(ts: float | None) -> str:
    return iso_utc(ts) if ts is not None else "-"


def _print_table(rows: list[list[str]], headers: list[str], out: TextIO) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in [headers, *rows]:
        out.write("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() + "\n")


# -- commands ------------------------------------------------------------------------------------


async def _open_store(settings: Settings) -> SQLiteStore:
    """The existing store, for commands that read it or change what is in it (never created here)."""
    return await SQLiteStore.open(settings.store_path, create=False)


async def _open_for_credentials(settings: Settings) -> tuple[SQLiteStore, TokenHasher]:
    """The store, created if need be, and its token hasher: for the commands that issue or check tokens."""
    store = await SQLiteStore.open(settings.store_path)
    try:
        return store, await open_token_hasher(store)
    except BaseException:
        await store.close()
        raise


async def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        runtime = await open_runtime(settings, orchestrator_port=args.orchestrator_port)
    except CannotListen as exc:
        flag = "--port" if exc.port == settings.server.port else "--orchestrator-port"
        print(f"mcp-console: {exc} (another mcp-console? {flag} names another port)", file=sys.stderr)
        return 1
    await runtime.start()

    def announce() -> None:
        where = (f"our orchestrator on {runtime.orchestrator_url}" if runtime.orchestrator is not None
                 else f"the orchestrator at {runtime.orchestrator_url}")
        print(f"mcp-console gateway {__version__} listening on {runtime.gateway_url}, with {where} "
              f"(store: {runtime.gateway.store.path})", file=sys.stderr, flush=True)

    def reload() -> None:
        """SIGHUP: the config file read again; what can change while serving does, the rest is named."""
        try:
            settings = _settings(args)
        except ConfigError as exc:
            log.error("SIGHUP: the config was not reloaded, nothing changed: %s", exc)
            return
        outcome = runtime.gateway.reload(settings)
        if not outcome.applied and not outcome.kept:
            log.info("SIGHUP: config reloaded, nothing changed")
        if outcome.applied:
            log.info("SIGHUP: config reloaded, now in force: %s", ", ".join(outcome.applied))
        if outcome.kept:
            log.warning("SIGHUP: changed, but in force only after a restart: %s", ", ".join(outcome.kept))

    return await serve_until_signalled(runtime.servers, runtime.aclose, announce, runtime.stop, reload)


async def cmd_orchestrator(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store, hasher = await _open_for_credentials(settings)
    orchestrator = EmbeddedOrchestrator(store, hasher, request_ttl_seconds=settings.permission.request_ttl_seconds,
                                        max_body_bytes=settings.server.max_body_bytes)
    try:
        server = HttpServer(orchestrator.app(), settings.server.host, args.port)
    except CannotListen as exc:
        await store.close()
        print(f"mcp-console: {exc} (another orchestrator? --port names another)", file=sys.stderr)
        return 1
    await orchestrator.start()

    async def cleanup() -> None:
        await orchestrator.aclose()
        await store.close()

    def announce() -> None:
        print(f"mcp-console orchestrator listening on {server.url} (store: {store.path})", file=sys.stderr,
              flush=True)

    return await serve_until_signalled([server], cleanup, announce)


async def cmd_mcp_stdio(args: argparse.Namespace) -> int:
    # The MCP SDK loads only for this command (about a second): never for the others, nor for the console.
    from gateway_core.mcp_stdio import TOKEN_ENVIRONMENT, URL_ENVIRONMENT, default_url, run_bridge

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per forwarded request is noise
    token = os.environ.pop(TOKEN_ENVIRONMENT, "").strip() or None  # nothing started from here inherits it
    url = args.url or os.environ.get(URL_ENVIRONMENT) or default_url(_settings(args).server.port)
    return await run_bridge(url, token, **({} if args.wait is None else {"wait_seconds": args.wait}))


def _print_credential(kind: str, credential_id: str, name: str, token: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"id": credential_id, "name": name, "token": token}))
        return
    print(f"{kind} {credential_id} ({name}) added.\ntoken: {token}")
    print("Store the token now: it is kept only as a hash and will not be shown again.", file=sys.stderr)


async def _add_credential(
    args: argparse.Namespace, kind: str,
    create: Callable[[SQLiteStore, TokenHasher], Awaitable[tuple[Agent | Operator, str]]],
) -> int:
    store, hasher = await _open_for_credentials(_settings(args))
    try:
        holder, token = await create(store, hasher)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        await store.close()
    _print_credential(kind, holder.id, holder.name, token, args.json)
    return 0


async def cmd_operators_add(args: argparse.Namespace) -> int:
    return await _add_credential(args, "operator",
                                 lambda store, hasher: create_operator(store, hasher, args.name, _actor()))


async def cmd_agents_add(args: argparse.Namespace) -> int:
    return await _add_credential(args, "agent",
                                 lambda store, hasher: create_agent(store, hasher, args.name, _actor(), args.id))


def _print_holders(kind: str, holders: Sequence[Agent | Operator], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"id": h.id, "name": h.name, "created_at": _when(h.created_at),
                           "revoked_at": h.revoked_at and _when(h.revoked_at)} for h in holders]))
    elif not holders:
        print(f"no {kind}s yet: add one with 'mcp-console {kind}s add NAME'")
    else:
        _print_table([[h.id, h.name, _when(h.created_at), "revoked" if h.revoked_at else "active"]
                      for h in holders], ["ID", "NAME", "CREATED", "STATE"], sys.stdout)


async def cmd_agents_list(args: argparse.Namespace) -> int:
    store = await _open_store(_settings(args))
    try:
        agents = await store.list_agents()
    finally:
        await store.close()
    _print_holders("agent", agents, args.json)
    return 0


async def cmd_operators_list(args: argparse.Namespace) -> int:
    store = await _open_store(_settings(args))
    try:
        operators = await store.list_operators()
    finally:
        await store.close()
    _print_holders("operator", operators, args.json)
    return 0


async def cmd_agents_revoke(args: argparse.Namespace) -> int:
    store = await _open_store(_settings(args))
    try:
        revoked = await store.revoke_agent(args.agent_id, _actor())
    finally:
        await store.close()
    if not revoked:
        print(f"no active agent {args.agent_id!r}", file=sys.stderr)
        return 1
    print(f"agent {args.agent_id} revoked: its grants ended and its pending requests cancelled; its token stops "
          "working within 2 seconds")
    return 0


async def cmd_operators_revoke(args: argparse.Namespace) -> int:
    store = await _open_store(_settings(args))
    try:
        revoked = await store.revoke_operator(args.operator_id, _actor())
    finally:
        await store.close()
    if not revoked:
        print(f"no active operator {args.operator_id!r} (see 'mcp-console operators list')", file=sys.stderr)
        return 1
    print(f"operator {args.operator_id} revoked: its token stops working within 2 seconds, and its attached "
          "consoles are disconnected")
    return 0


def _check_grant_target(service: str, operation: str | None, settings: Settings) -> str:
    """The service's name; UsageError for a service neither the catalog nor `[mcp_servers]` has, or an operation
    its declaration does not (an MCP server's tools are not known here: any name is taken)."""
    catalog = Catalog(DEFAULT_CATALOG)
    catalog = catalog.extended(upstream_specs(settings, catalog))
    spec = catalog.resolve(service)
    if spec is None:
        names = ", ".join(catalog.services)
        raise UsageError(f"unknown service {service!r}; services: {names}")
    handler = HANDLER_CLASSES.get(spec.name)
    if operation is not None and handler is not None and operation not in handler.operations:
        raise UsageError(f"{spec.name} has no operation {operation!r}; it has: {', '.join(handler.operations)}")
    return spec.name


async def cmd_grants_add(args: argparse.Namespace) -> int:
    settings = _settings(args)
    service = _check_grant_target(args.service, args.operation, settings)
    lasts = parse_duration(args.expires_in) if args.expires_in else None
    store = await _open_store(settings)
    expires_at = store.clock() + lasts if lasts is not None else None
    try:
        grant = await store.add_grant(args.agent_id, service, args.operation, expires_at, _actor())
    finally:
        await store.close()
    scope = f"{service}.{args.operation}" if args.operation else f"all of {service}"
    print(f"grant {grant.id}: {args.agent_id} may use {scope} until {_when(expires_at) if expires_at else 'revoked'}")
    return 0


async def cmd_grants_list(args: argparse.Namespace) -> int:
    store = await _open_store(_settings(args))
    try:
        grants = await store.list_grants(agent_id=args.agent, active_only=not args.all)
        now = store.clock()
    finally:
        await store.close()
    if args.json:
        print(json.dumps([{"id": g.id, "agent_id": g.agent_id, "service": g.service,
                           "operation": g.operation or "*", "expires_at": g.expires_at and _when(g.expires_at),
                           "granted_by": g.granted_by, "granted_at": _when(g.granted_at),
                           "revoked_at": g.revoked_at and _when(g.revoked_at)} for g in grants]))
    elif not grants:
        print("no grants")
    else:
        _print_table([[g.id, g.agent_id, g.service, g.operation or "*", _when(g.expires_at), g.granted_by,
                       "active" if g.active_at(now) else ("revoked" if g.revoked_at else "expired")]
                      for g in grants], ["ID", "AGENT", "SERVICE", "OPERATION", "EXPIRES", "BY", "STATE"],
                     sys.stdout)
    return 0


async def cmd_grants_revoke(args: argparse.Namespace) -> int:
    store = await _open_store(_settings(args))
    try:
        grant = await store.revoke_grant(args.grant_id, _actor())
    finally:
        await store.close()
    if grant is None:
        print(f"no active grant {args.grant_id!r}", file=sys.stderr)
        return 1
    print(f"grant {grant.id} revoked ({grant.agent_id} on {grant.service})")
    return 0


def _private_file(path: str) -> TextIO:
    """A new file (or an emptied one) for an export, readable by its owner only: the ledger is private. A file
    that was there keeps its mode unless made private here, and a symbolic link planted at the path would
    have the export overwrite whatever it points to: neither is taken."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise UsageError(f"cannot write {path}: {why}") from None
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, "w", newline="")


def _inert(value: object) -> object:
    """A cell a spreadsheet will not run: agents choose ids, services and operations, and `=HYPERLINK(...)` in
    one is a formula to whoever opens the export. Text starting as a formula does is quoted (OWASP's rule);
    numbers (an error code is negative) are left as they are."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


CSV_COLUMNS = ["id", "time", "agent_id", "method", "service", "operation", "status", "error_code",
               "duration_ms", "tokens", "cost_usd", "rpc_id", "permission_request_id", "via"]


async def cmd_calls_export(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError("--since takes an ISO-8601 time, like 2026-11-29 or 2026-11-29T08:00Z") from None
        since_ts = (since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp()
    store = await _open_store(_settings(args))  # first: a store that cannot be read leaves a last export whole
    try:
        # A command-line tool: nothing else shares this event loop, so plain file writes are fine.
        out = _private_file(args.output) if args.output else sys.stdout
    except UsageError:
        await store.close()
        raise
    try:
        writer = csv.DictWriter(out, CSV_COLUMNS) if args.format == "csv" else None
        if writer:
            writer.writeheader()
        async for call in store.iter_calls(since=since_ts if since else None):
            row = call.as_dict()
            row["time"] = iso_utc(row.pop("ts"))
            if writer:
                writer.writerow({key: _inert(value) for key, value in row.items()})
            else:
                out.write(json.dumps({"id": row.pop("id"), "time": row.pop("time"), **row}) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
        await store.close()
    return 0


# -- the parser ----------------------------------------------------------------------------------


COMMANDS = {"serve", "orchestrator", "agents", "grants", "calls", "operators", "mcp-stdio"}


def _command(group: Any, name: str, *, text: str, **options: Any) -> argparse.ArgumentParser:
    """A command whose own --help opens with the line its parent lists it by."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=text, description=text, **options)
    return parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", help="the SQLite store (default: in the user's data dir)")
    common.add_argument("--config", metavar="FILE", help="a TOML config file (the environment wins over it)")

    parser = argparse.ArgumentParser(
        prog="mcp-console",
        description="The gateway's command line: serve it headless, manage agents, grants and operators, "
                    "export the ledger.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"mcp-console {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = _command(commands, "serve", parents=[common],
                     text="run the gateway headless (stops on SIGINT/SIGTERM; SIGHUP reloads the config)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8100)")
    serve.add_argument("--orchestrator-port", type=int, default=9403,
                       help="port of our orchestrator, started beside the gateway (default 9403)")
    serve.add_argument("--orchestrator-url", metavar="URL",
                       help="link to this orchestrator instead of starting ours (or set ORCHESTRATOR_URL)")
    serve.set_defaults(run=cmd_serve)

    orchestrator = _command(commands, "orchestrator", parents=[common],
                            text="run our orchestrator alone (permissions and the event feed)")
    orchestrator.add_argument("--host", help="address to bind (default 127.0.0.1)")
    orchestrator.add_argument("--port", type=int, default=9403, help="port to bind (default 9403)")
    orchestrator.set_defaults(run=cmd_orchestrator, port_is_orchestrator=True)

    mcp_stdio = _command(commands, "mcp-stdio",
                         text="an MCP server on stdin/stdout for clients that only start stdio servers: it forwards "
                              "to the gateway's /mcp, as the agent whose token is in MCP_CONSOLE_TOKEN (never argv)")
    mcp_stdio.add_argument("--url", metavar="URL", help="the gateway's MCP front door (default: MCP_CONSOLE_URL, "
                                                        "else http://127.0.0.1:<[server] port>/mcp)")
    mcp_stdio.add_argument("--config", metavar="FILE", help="a TOML config file: its [server] port")
    mcp_stdio.add_argument("--wait", type=_seconds, metavar="SECONDS",  # its default is mcp_stdio's
                           help="how long to wait for a gateway that is not up yet before exiting 1 (default 30)")
    mcp_stdio.set_defaults(run=cmd_mcp_stdio)

    operators = _command(commands, "operators", text="operators and their tokens").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    operator_add = _command(operators, "add", parents=[common],
                            text="add an operator and print its token once (for attach)")
    operator_add.add_argument("name", help="who the operator is: the audit names them so")
    operator_add.add_argument("--json", action="store_true", help='print {"id","name","token"}')
    operator_add.set_defaults(run=cmd_operators_add)
    operator_list = _command(operators, "list", parents=[common], text="list operators")
    operator_list.add_argument("--json", action="store_true")
    operator_list.set_defaults(run=cmd_operators_list)
    operator_revoke = _command(operators, "revoke", parents=[common], text="revoke an operator's token")
    operator_revoke.add_argument("operator_id", metavar="ID", help="the operator's id (operators list)")
    operator_revoke.set_defaults(run=cmd_operators_revoke)

    agents = _command(commands, "agents", text="agents and their tokens").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = _command(agents, "add", parents=[common], text="add an agent and print its token once")
    add.add_argument("name", help="a name to know the agent by (screens and listings show it)")
    add.add_argument("--id", help="the agent id (default: a new UUID, as the external orchestrator requires)")
    add.add_argument("--json", action="store_true", help='print {"id","name","token"}')
    add.set_defaults(run=cmd_agents_add)
    listing = _command(agents, "list", parents=[common], text="list agents")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_agents_list)
    revoke = _command(agents, "revoke", parents=[common], text="revoke an agent's token")
    revoke.add_argument("agent_id", metavar="ID", help="the agent's id (agents list)")
    revoke.set_defaults(run=cmd_agents_revoke)

    grants = _command(commands, "grants", text="what agents may use").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    grant_add = _command(grants, "add", parents=[common], text="let an agent use a service (or one operation)")
    grant_add.add_argument("agent_id", metavar="AGENT_ID", help="the agent's id (agents list)")
    grant_add.add_argument("service", metavar="SERVICE", help="a service or its alias (coolify, postgres, gh, ...)")
    grant_add.add_argument("--operation", metavar="OP", help="only this operation (default: the whole service)")
    grant_add.add_argument("--expires-in", metavar="DURATION", help="e.g. 30m, 1h, 8h, 2d (default: never)")
    grant_add.set_defaults(run=cmd_grants_add)
    grant_list = _command(grants, "list", parents=[common], text="list active grants")
    grant_list.add_argument("--agent", metavar="AGENT_ID", help="only this agent's")
    grant_list.add_argument("--all", action="store_true", help="include revoked and expired grants")
    grant_list.add_argument("--json", action="store_true")
    grant_list.set_defaults(run=cmd_grants_list)
    grant_revoke = _command(grants, "revoke", parents=[common], text="revoke a grant")
    grant_revoke.add_argument("grant_id", metavar="GRANT_ID", help="the grant's id (grants list)")
    grant_revoke.set_defaults(run=cmd_grants_revoke)

    calls = _command(commands, "calls", text="the calls ledger").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    export = _command(calls, "export", parents=[common], text="write the whole ledger as CSV or JSON lines")
    export.add_argument("--format", choices=["csv", "jsonl"], required=True)
    export.add_argument("--output", metavar="FILE", help="default: standard output")
    export.add_argument("--since", metavar="TIME", help="only calls at or after this ISO-8601 time")
    export.set_defaults(run=cmd_calls_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    if getattr(args, "run", None) is None:
        parser.error("a command is needed (the console itself starts from 'mcp-console' without one)")
    configure_logging(logging.INFO, stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per orchestrator call is noise
    run = args.run
    try:
        exit_code: int = run_fast(run(args))
        return exit_code
    except UsageError as exc:
        parser.exit(2, f"mcp-console: {exc}\n")
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the interpreter from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process ended by SIGPIPE
    except (ConfigError, StoreError, ValueError) as exc:
        print(f"mcp-console: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file named on the command line that cannot be written, say
        print(f"mcp-console: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
