"""`python -m console`: the console on the embedded defaults (in progress: see issue 4)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from console.app import ConsoleApp
from gateway_core.config import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m console",
                                     description="The operator's console: the gateway and our orchestrator inside "
                                                 "it, live calls and health, permission requests from the keyboard.")
    parser.add_argument("--db", metavar="PATH", help="the SQLite store (default: in the user's data dir)")
    parser.add_argument("--config", metavar="FILE", help="a TOML config file (the environment wins over it)")
    parser.add_argument("--gateway-port", type=int, default=8100, help="the gateway's port (default 8100)")
    parser.add_argument("--orchestrator-port", type=int, default=9403, help="our orchestrator's port (default 9403)")
    parser.add_argument("--orchestrator-url", metavar="URL", help="link to this orchestrator instead of ours")
    parser.add_argument("--read-only", action="store_true", help="watch only: no approvals")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {"server": {"port": args.gateway_port}}
    if args.db:
        overrides["store"] = {"path": Path(args.db)}
    if args.orchestrator_url:
        overrides["orchestrator_url"] = args.orchestrator_url
    try:
        settings = load_settings(Path(args.config) if args.config else None, **overrides)
    except ConfigError as exc:
        print(f"mcp-console: {exc}", file=sys.stderr)
        return 1
    ConsoleApp(settings, args.orchestrator_port, read_only=args.read_only).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
