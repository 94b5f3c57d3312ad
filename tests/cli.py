"""Running `mcp-console` as a user would: a separate process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

COMMAND = [sys.executable, "-m", "console"]  # the installed `mcp-console`


async def mcp_console(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        *COMMAND, *map(str, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    result = subprocess.CompletedProcess(args, process.returncode or 0, stdout.decode(), stderr.decode())
    if check and result.returncode != 0:
        raise AssertionError(f"mcp-console {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result
