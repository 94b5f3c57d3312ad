"""`mcp-console mcp-stdio` (mcp.md §2) as a stdio-only client runs it: a child process started by the SDK's own
stdio client (in its "legacy" and "auto" modes), forwarding to the real gateway's front door on 127.0.0.1, with the
agent's token in MCP_CONSOLE_TOKEN and nowhere else."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import mcp_types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters, stdio_client

from gateway_core.mcp_stdio import TOKEN_ENVIRONMENT
from gateway_core.redaction import shown_url
from tests.cli import COMMAND, mcp_console
from tests.ports import free_port
from tests.servers import run_gateway, run_linked
from tests.test_mcp_front_door import FAST_PROGRESS, ledger, mcp_client, serving, structured
from tests.test_permissions import feed, respond

MODES = pytest.mark.parametrize("mode", ["legacy", "auto"])


@contextlib.asynccontextmanager
async def bridged(url: str, token: str, mode: str, errors: Path) -> AsyncIterator[Client]:
    """The SDK's client on a `mcp-console mcp-stdio` child, the token in its environment only."""
    parameters = StdioServerParameters(command=COMMAND[0], args=[*COMMAND[1:], "mcp-stdio", "--url", f"{url}/mcp"],
                                       env={TOKEN_ENVIRONMENT: token})
    with errors.open("w") as errlog:
        async with Client(stdio_client(parameters, errlog=errlog), mode=mode) as client:
            yield client


@MODES
async def test_the_bridge_lists_calls_and_relays_progress_as_the_front_door(tmp_path: Path, mode: str) -> None:
    async with run_gateway(tmp_path / "gw.db", mcp=FAST_PROGRESS) as gw:
        agent_id, token = await gw.add_agent()
        await gw.grant(agent_id, "echo")
        progress: list[str | None] = []

        async def heard(value: float, total: float | None, message: str | None) -> None:
            progress.append(message)

        async with mcp_client(gw.url, token) as direct:
            direct_tools = (await direct.list_tools()).tools
        async with bridged(gw.url, token, mode, tmp_path / "stderr") as client:
            bridged_tools = (await client.list_tools()).tools
            echoed = await client.call_tool("echo_echo", {"message": "hi", "times": 2})
            napped = await client.call_tool("echo_nap", {"seconds": 0.5}, progress_callback=heard)
            refused = await client.call_tool("echo_echo", {"message": ""})
        rows = await ledger(gw)
    assert bridged_tools == direct_tools
    assert echoed.is_error is False and structured(echoed)["data"] == {"echo": "hihi"}
    assert napped.is_error is False and "Running echo.nap" in progress
    assert refused.is_error is True and structured(refused)["error"]["code"] == -32602
    assert [(row.agent_id, row.operation, row.error_code, row.via) for row in rows] == [
        (agent_id, "echo", None, "mcp"), (agent_id, "nap", None, "mcp"), (agent_id, "echo", -32602, "mcp")]
    assert isinstance(echoed.content[0], types.TextContent)


@MODES
async def test_a_call_cancelled_through_the_bridge_never_runs_when_approved(tmp_path: Path, mode: str) -> None:
    """The bridge speaks the 2025 wire to the gateway: its client's cancel reached the gateway as a
    notifications/cancelled of its own, which stopped nothing; an approval then ran the destructive call."""
    async with run_linked(tmp_path / "p.db") as linked, \
            feed(linked.orchestrator_url, linked.operator_token) as operator:
        _, token = await linked.add_agent()
        async with bridged(linked.url, token, mode, tmp_path / "stderr") as client:
            held = asyncio.create_task(client.call_tool("echo_wipe", {"target": "prod"}))
            request = await operator.next("mcp_permission_request")
            held.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held
            async with asyncio.timeout(10):
                while not [row for row in await ledger(linked) if row.error_code == -32800]:
                    await asyncio.sleep(0.05)
            await respond(linked, request["request_id"], True, scope="once")
            await asyncio.sleep(0.5)
        rows = await ledger(linked)
    assert [(row.operation, row.status, row.error_code) for row in rows if row.operation == "wipe"] == [
        ("wipe", "error", -32800)]


async def test_the_bridge_outlives_a_gateway_restart_and_answers_while_it_is_down(tmp_path: Path) -> None:
    """The SDK's client ran its transport in the bridge's own task group: a request the gateway could not be
    reached for took the bridge down (stdout closed, the process hanging), so a restarted gateway lost every
    stdio agent."""
    db, port = tmp_path / "gw.db", free_port()
    token = json.loads((await mcp_console("agents", "add", "bridged", "--db", db, "--json")).stdout)["token"]
    url = f"http://127.0.0.1:{port}"

    def gateway() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*COMMAND, "serve", "--db", str(db), "--port", str(port)],
                                stderr=subprocess.DEVNULL)

    first = gateway()
    try:
        await serving(url)
        async with bridged(url, token, "legacy", tmp_path / "stderr") as client:
            before = (await client.list_tools()).tools
            first.send_signal(signal.SIGTERM)
            first.wait(30)
            with pytest.raises(MCPError) as down:
                async with asyncio.timeout(20):
                    await client.call_tool("coolify_get-version", {})
            second = gateway()
            try:
                await serving(url)
                after = (await client.list_tools()).tools
            finally:
                second.terminate()
                second.wait(30)
    finally:
        first.kill()
        first.wait()
    assert down.value.code == -32001 and "may have run" in down.value.message, down.value
    assert [tool.name for tool in after] == [tool.name for tool in before]


async def test_a_missing_or_refused_token_ends_the_bridge_with_exit_2_naming_the_variable(tmp_path: Path) -> None:
    async with run_gateway(tmp_path / "gw.db") as gw:
        url = f"{gw.url}/mcp"
        refused = await _bridge_exit(url, "mcpa_wrong-token-value")
        missing = await _bridge_exit(url, None)
    for code, stderr in (refused, missing):
        assert code == 2 and TOKEN_ENVIRONMENT in stderr and len(stderr.strip().splitlines()) == 1
    assert "refused" in refused[1] and "wrong-token-value" not in refused[1]
    # There is no way to give the token on the command line, where `ps` would show it.
    no_option = await mcp_console("mcp-stdio", "--token", "mcpa_x", check=False)
    assert no_option.returncode == 2 and "unrecognized arguments: --token" in no_option.stderr


async def test_a_bridge_whose_gateway_never_comes_up_gives_up_after_wait_seconds() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    code, stderr = await _bridge_exit(url, "mcpa_some-token-value", "--wait", "1.5")
    assert code == 1 and f"no gateway answered at {url} within 1.5 s" in stderr and "--wait" in stderr
    bad = await mcp_console("mcp-stdio", "--url", url, "--wait", "-1", check=False)
    assert bad.returncode == 2 and "seconds must be 0 or more" in bad.stderr


async def _bridge_exit(url: str, token: str | None, *options: str) -> tuple[int, str]:
    """Runs the bridge with `token` (or none) in its environment; its exit code and stderr."""
    environment = {"PATH": "/usr/bin:/bin", **({TOKEN_ENVIRONMENT: token} if token else {})}
    process = await asyncio.create_subprocess_exec(*COMMAND, "mcp-stdio", "--url", url, *options, env=environment,
                                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE)
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_nothing_the_bridge_starts_inherits_the_token(tmp_path: Path) -> None:
    # The bridge's own command, in-process, then a child of the same process: the child's environment has no token.
    code = (f"import os, subprocess, sys; from gateway_core.cli import main; "
            f"os.environ[{TOKEN_ENVIRONMENT!r}] = 'mcpa_secret-value'; "
            f"code = main(['mcp-stdio', '--url', sys.argv[1]]); "
            f"print(code, 'secret-value' in subprocess.run(['env'], capture_output=True, text=True).stdout)")
    async with run_gateway(tmp_path / "gw.db") as gw:
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, f"{gw.url}/mcp",
                                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE)
        stdout, _ = await process.communicate()
    assert stdout.decode().split() == ["2", "False"]


async def test_a_bridge_started_before_its_gateway_waits_for_it(tmp_path: Path) -> None:
    """A client's configuration may start the bridge before the gateway is up (both at login): the bridge retries
    for --wait seconds (30 by default), so a gateway that comes up a moment later is served."""
    db = tmp_path / "gw.db"
    token = json.loads((await mcp_console("agents", "add", "early", "--db", db, "--json")).stdout)["token"]
    port = free_port()
    parameters = StdioServerParameters(
        command=COMMAND[0], args=[*COMMAND[1:], "mcp-stdio", "--url", f"http://127.0.0.1:{port}/mcp"],
        env={TOKEN_ENVIRONMENT: token})
    gateway: subprocess.Popen[bytes] | None = None

    async def start_gateway_later() -> None:
        nonlocal gateway
        await asyncio.sleep(1.5)  # the bridge has tried, and failed, at least once by then
        gateway = subprocess.Popen([*COMMAND, "serve", "--db", str(db), "--port", str(port), "--orchestrator-port",
                                    "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    later = asyncio.create_task(start_gateway_later())
    try:
        with (tmp_path / "bridge.log").open("w") as errlog:
            async with Client(stdio_client(parameters, errlog=errlog), mode="legacy") as client:
                listed = await client.list_tools()
    finally:
        await later
        assert gateway is not None
        gateway.send_signal(signal.SIGTERM)
        exit_code = gateway.wait(30)
    assert listed.tools == [] and exit_code == 0  # no service configured: served, with nothing to list


@pytest.mark.parametrize(("url", "shown"), [
    ("http://bot:s3cret@gw:8100/mcp", "http://gw:8100/mcp"),
    ("http://bot:p@ss@gw/mcp?x=1", "http://gw/mcp"),  # an `@` written raw in the password goes with it
    ("https://gw/mcp?api_key=k3y#token=t0k", "https://gw/mcp"),  # a query or fragment may carry a key
    ("http://127.0.0.1:8100/mcp", "http://127.0.0.1:8100/mcp")])
def test_a_url_in_a_message_carries_no_credentials_query_or_fragment(url: str, shown: str) -> None:
    assert shown_url(url) == shown
