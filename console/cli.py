"""`mcp-console`: the operator's console; with a command (serve, agents, grants, …), the gateway's
command line (gateway_core.cli), which never imports the console."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway_core import __version__
from gateway_core import cli as gateway_cli
from gateway_core.config import ConfigError, load_settings
from gateway_core.server import new_fast_loop

DESCRIPTION = """\
The operator's console: the MCP gateway and our orchestrator run inside it; services, calls and cost live;
permission requests pop up to be decided from the keyboard; Coolify operations by hand; the audit log.
Press ? inside for every key."""

EPILOG = """\
commands (each has --help):
  serve          the gateway headless, without the console
  orchestrator   our orchestrator alone
  agents         add, list or revoke agents (mcp-console agents add NAME)
  grants         add, list or revoke what agents may use
  operators      add operators (tokens for another console or orchestrator client)
  calls          export the calls ledger

examples:
  mcp-console --sandbox                  try it: a sandbox Coolify and three agents calling it
  mcp-console --read-only                watch without deciding or changing anything
  mcp-console --no-gateway --orchestrator-url http://ops:9403   decide requests for a gateway elsewhere
"""


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
                        help="our orchestrator's port (default 9403); with --no-gateway, the one to attach to")
    parser.add_argument("--orchestrator-url", metavar="URL",
                        help="link to this orchestrator instead of starting ours (or set ORCHESTRATOR_URL, "
                             "and ORCHESTRATOR_TOKEN for an operator token)")
    parser.add_argument("--read-only", action="store_true",
                        help="a viewer: no approvals, no revocations, only read operations")
    parser.add_argument("--no-gateway", action="store_true",
                        help="serve no agents: attach to the orchestrator only, to decide its requests")
    parser.add_argument("--sandbox", action="store_true",
                        help="add a Coolify-compatible server on loopback and synthetic agents calling it")
    parser.add_argument("--sandbox-agents", type=int, default=3, metavar="N",
                        help="how many synthetic agents the sandbox runs (default 3; 0 for none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if gateway_cli.COMMANDS.intersection(arguments):
        return gateway_cli.main(arguments)
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.sandbox_agents < 0:
        parser.error("--sandbox-agents takes 0 or more")
    if args.sandbox and args.no_gateway:
        parser.error("--sandbox needs the gateway: its agents call it (leave out --no-gateway)")
    if not all(stream is not None and stream.isatty() for stream in (sys.__stdin__, sys.__stdout__, sys.__stderr__)):
        # Without one, Textual would spin on its input's end and draw into a pipe.
        print("mcp-console: the console needs a terminal; to run the gateway without one: mcp-console serve",
              file=sys.stderr)
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
    # The screen is the console's: log to a file beside the store (its owner's only), never to the terminal.
    log_file = settings.store_path.with_suffix(".log")
    try:
        os.close(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    except OSError as exc:
        print(f"mcp-console: cannot write the log {log_file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.WARNING, filename=log_file,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("console").setLevel(logging.INFO)  # the console's own lines: why and when it stopped

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


if __name__ == "__main__":
    sys.exit(main())
