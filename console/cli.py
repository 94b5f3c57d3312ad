"""`mcp-console`: the operator's console, running the gateway in its own process; `mcp-console attach`: the
same console on a gateway that runs elsewhere (`mcp-console serve`); with another command (serve, agents,
grants, …), the gateway's command line (gateway_core.cli), which never imports the console."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from platformdirs import user_config_path

from gateway_core import __version__
from gateway_core import cli as gateway_cli
from gateway_core.config import ConfigError, load_settings
from gateway_core.logs import configure_logging
from gateway_core.operator_client import RemoteGateway
from gateway_core.server import new_fast_loop

DESCRIPTION = """\
The operator's console: the MCP gateway and our orchestrator run inside it; services, calls and cost live;
permission requests pop up to be decided from the keyboard; any service's operations by hand; the audit log.
Press ? inside for every key."""

EPILOG = """\
commands (each has --help):
  attach [URL]   this console on a gateway that runs as a service (quitting leaves it serving)
  serve          the gateway headless, without the console
  orchestrator   our orchestrator alone
  agents         add, list or revoke agents (mcp-console agents add NAME)
  grants         add, list or revoke what agents may use
  operators      add, list or revoke operators (their tokens attach consoles)
  calls          export the calls ledger
  mcp-stdio      an MCP server on stdio for clients that only start those (token in MCP_CONSOLE_TOKEN)

examples:
  mcp-console --sandbox                  try it: stand-ins of five services and three agents calling them
  mcp-console --read-only                watch without deciding or changing anything
  ssh box -t mcp-console attach          on call: the gateway on box, as the operator whose token box keeps
  mcp-console --no-gateway --orchestrator-url http://ops:9403   decide an external orchestrator's requests
"""

ATTACH_DESCRIPTION = """\
The console on a gateway that runs elsewhere (mcp-console serve, say under systemd): every screen as in
the embedded console, fed by the gateway's operator API. You act as the operator whose token you hold:
decisions, revocations and operations are audited under that name. Quitting leaves the gateway serving.

The operator token (mcp-console operators add NAME, on the gateway's host) comes from the environment
variable MCP_CONSOLE_OPERATOR_TOKEN, or from a file only you can read (--token-file; by default
~/.config/mcp-console/operator-token); never from the command line, where other users could read it."""

TOKEN_ENVIRONMENT = "MCP_CONSOLE_OPERATOR_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-console", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mcp-console {__version__}")
    parser.add_argument("--db", metavar="PATH",
                        help="the SQLite store (default: in the user's data dir; the sandbox keeps its own)")
    parser.add_argument("--config", metavar="FILE", help="a TOML config file (the environment wins over it)")
    parser.add_argument("--gateway-port", type=int, default=8100, metavar="PORT",
                        help="the gateway's port on 127.0.0.1 (default 8100)")
    parser.add_argument("--orchestrator-port", type=int, default=9403, metavar="PORT",
                        help="our orchestrator's port (default 9403)")
    parser.add_argument("--orchestrator-url", metavar="URL",
                        help="link to this orchestrator instead of starting ours (or set ORCHESTRATOR_URL, "
                             "and ORCHESTRATOR_TOKEN for an operator token)")
    parser.add_argument("--read-only", action="store_true",
                        help="a viewer: no approvals, no revocations, only read operations")
    parser.add_argument("--no-gateway", action="store_true",
                        help="run no gateway: decide the requests of the external orchestrator at "
                             "--orchestrator-url (to watch our gateway elsewhere: mcp-console attach)")
    parser.add_argument("--sandbox", action="store_true",
                        help="serve stand-ins of Coolify, mem0, GitHub, Cloudflare and n8n on loopback, with "
                             "synthetic agents calling them")
    parser.add_argument("--sandbox-agents", type=int, default=3, metavar="N",
                        help="how many synthetic agents the sandbox runs (default 3; 0 for none)")
    return parser


def build_attach_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-console attach", description=ATTACH_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", nargs="?", metavar="URL",
                        help="the gateway (default: the one on this host, http://127.0.0.1:<[server] port>)")
    parser.add_argument("--token-file", metavar="FILE", type=Path,
                        help=f"the operator token's file, readable by you alone (default: {default_token_file()})")
    parser.add_argument("--config", metavar="FILE", help="a TOML config file: its [console] keys and snooze")
    parser.add_argument("--read-only", action="store_true",
                        help="a viewer: no approvals, no revocations, only read operations")
    return parser


def default_token_file() -> Path:
    return user_config_path("mcp-console") / "operator-token"


def operator_token(token_file: Path | None) -> str:
    """The operator token from the environment (then removed from it), or from a file only its owner can
    read; ValueError saying how to provide one."""
    token = os.environ.pop(TOKEN_ENVIRONMENT, "").strip()
    if token:
        return token
    path = token_file or default_token_file()
    try:
        with path.open() as handle:
            mode = os.fstat(handle.fileno()).st_mode
            token = handle.read().strip()
    except FileNotFoundError:
        raise ValueError(f"no operator token: set {TOKEN_ENVIRONMENT}, or put the token in {path} (chmod 600). "
                         "An operator gets one on the gateway's host: mcp-console operators add NAME") from None
    except OSError as exc:
        raise ValueError(f"cannot read the operator token file {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ValueError(f"the operator token file {path} can be read by others: chmod 600 {path}")
    if not token:
        raise ValueError(f"the operator token file {path} is empty")
    return token


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["attach"]:
        return attach(arguments[1:])
    if gateway_cli.COMMANDS.intersection(arguments):
        return gateway_cli.main(arguments)
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.sandbox_agents < 0:
        parser.error("--sandbox-agents takes 0 or more")
    if args.sandbox and args.no_gateway:
        parser.error("--sandbox needs the gateway: its agents call it (leave out --no-gateway)")
    if args.no_gateway and not (args.orchestrator_url or os.environ.get("ORCHESTRATOR_URL")):
        parser.error("--no-gateway is for deciding an external orchestrator's requests: name it with "
                     "--orchestrator-url. To watch our gateway running elsewhere: mcp-console attach [URL]")
    if not _has_terminal():
        return 1
    overrides: dict[str, Any] = {"server": {"port": args.gateway_port}}
    if args.db:
        overrides["store"] = {"path": Path(args.db)}
    if args.orchestrator_url:
        overrides["orchestrator_url"] = args.orchestrator_url
    try:
        settings = load_settings(Path(args.config) if args.config else None, **overrides)
        if args.sandbox and not args.db:
            settings = settings.model_copy(update={"store": settings.store.model_copy(
                update={"path": settings.store_path.with_name("sandbox.db")})})
        settings.store_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (ConfigError, OSError) as exc:
        print(f"mcp-console: {exc}", file=sys.stderr)
        return 1
    if not _log_to(settings.store_path.with_suffix(".log")):
        return 1

    from console.app import ConsoleApp  # Textual loads only when the console runs, not for a command
    from sandbox import Sandbox

    sandbox = Sandbox(args.sandbox_agents) if args.sandbox else None
    try:
        app = ConsoleApp(settings, args.orchestrator_port, read_only=args.read_only,
                         serve_gateway=not args.no_gateway, sandbox=sandbox)
    except ConfigError as exc:
        print(f"mcp-console: {exc}", file=sys.stderr)
        return 1
    app.run(loop=new_fast_loop())
    return app.return_code or 0


def attach(arguments: Sequence[str]) -> int:
    """`mcp-console attach [URL]`: the console on a gateway elsewhere, as the operator of the token."""
    args = build_attach_parser().parse_args(arguments)
    try:
        settings = load_settings(Path(args.config) if args.config else None)
        token = operator_token(args.token_file)
        url = args.url or f"http://127.0.0.1:{settings.server.port}"
        if "://" not in url:
            url = f"http://{url}"  # `attach box:8100`
        remote = RemoteGateway(url, token, read_only=args.read_only)
        settings.store_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"mcp-console: {exc}", file=sys.stderr)
        return 1
    if not _has_terminal() or not _log_to(settings.store_path.with_name("attach.log")):
        return 1

    from console.app import ConsoleApp

    try:
        app = ConsoleApp(settings, read_only=args.read_only, remote=remote)
    except ConfigError as exc:
        print(f"mcp-console: {exc}", file=sys.stderr)
        return 1
    app.run(loop=new_fast_loop())
    return app.return_code or 0


def _has_terminal() -> bool:
    if all(stream is not None and stream.isatty() for stream in (sys.__stdin__, sys.__stdout__, sys.__stderr__)):
        return True
    # Without one, Textual would spin on its input's end and draw into a pipe.
    print("mcp-console: the console needs a terminal (over SSH: ssh -t); to run the gateway without one: "
          "mcp-console serve", file=sys.stderr)
    return False


def _log_to(log_file: Path) -> bool:
    """The screen is the console's: it logs to a file beside the store (its owner's only), never to the terminal."""
    try:
        descriptor = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.fchmod(descriptor, 0o600)  # one made before, by hand or an older version, becomes private too
        os.close(descriptor)
    except OSError as exc:
        print(f"mcp-console: cannot write the log {log_file}: {exc.strerror or exc}", file=sys.stderr)
        return False
    configure_logging(logging.WARNING, file=log_file)
    logging.getLogger("console").setLevel(logging.INFO)  # the console's own lines: why and when it stopped
    return True


if __name__ == "__main__":
    sys.exit(main())
