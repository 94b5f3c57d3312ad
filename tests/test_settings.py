"""Settings from the environment and the config file: which variables are read, and how errors are told."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway_core.config import ConfigError, Settings, load_settings, settings_environment

ROOT = Path(__file__).resolve().parent.parent
SECRET = "tok-sekrit-5f2a9c"  # set beside every bad value: it must never show in an error


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mcp-console.toml"
    path.write_text(text)
    return path


def _error(config_file: Path | None = None, **overrides: object) -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(config_file, **overrides)
    return str(raised.value)


# -- what is read --------------------------------------------------------------------------------


def test_our_settings_are_read_under_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_CONSOLE_SERVER__PORT", "8200")
    monkeypatch.setenv("MCP_CONSOLE_POLICY__ALWAYS_ASK", '["destructive"]')
    monkeypatch.setenv("MCP_CONSOLE_UPSTREAM_TIMEOUT_SECONDS", "12.5")
    monkeypatch.setenv("mcp_console_auth__trust_agent_header", "true")  # names are read case-insensitively
    monkeypatch.setenv("MCP_CONSOLE_CONSOLE__KEYS__QUIT", "ctrl+x")
    monkeypatch.setenv("MCP_CONSOLE_RATE_LIMIT__PER_SERVICE__COOLIFY", '{"max_requests": 5, "window_ms": 1000}')
    monkeypatch.setenv("MCP_CONSOLE_HEALTH", '{"interval_seconds": 9}')  # a whole section, as JSON
    settings = load_settings()
    assert settings.server.port == 8200
    assert settings.policy.always_ask == ["destructive"]
    assert settings.upstream_timeout_seconds == 12.5
    assert settings.auth.trust_agent_header is True
    assert settings.console.keys == {"quit": "ctrl+x"}
    assert settings.rate_limit.per_service["coolify"].max_requests == 5
    assert settings.health.interval_seconds == 9


def test_service_settings_keep_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOLIFY_API_URL", "http://coolify.test")
    monkeypatch.setenv("COOLIFY_API_TOKEN", SECRET)
    monkeypatch.setenv("COOLIFY_TIMEOUT_SECONDS", "7")
    monkeypatch.setenv("ORCHESTRATOR_URL", "http://orchestrator.test")
    monkeypatch.setenv("ORCHESTRATOR_TOKEN", "operator-token")
    monkeypatch.setenv("POSTGRES_KIDS_ASCENSION_URL", "postgresql://u:pw@db/kids")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")
    monkeypatch.setenv("PLAYWRIGHT_MCP_COMMAND", "npx @playwright/mcp")
    monkeypatch.setenv("MCP_CONSOLE_MEM0_API_URL", "http://mem0.test")  # a service's setting is not prefixed
    settings = load_settings()
    assert settings.setting("COOLIFY_API_URL") == "http://coolify.test"
    assert settings.setting("COOLIFY_API_TOKEN") == SECRET
    assert settings.coolify_timeout_seconds == 7
    assert settings.setting("ORCHESTRATOR_URL") == "http://orchestrator.test"
    assert settings.setting("ORCHESTRATOR_TOKEN") == "operator-token"
    assert settings.setting("POSTGRES_KIDS_ASCENSION_URL") == "postgresql://u:pw@db/kids"
    assert settings.setting("GITHUB_TOKEN") == "ghp_x"
    assert settings.setting("PLAYWRIGHT_MCP_COMMAND") == "npx @playwright/mcp"
    assert settings.mem0_api_url is None


def test_other_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # A shell's own variables, the old unprefixed names and our flat setting without the prefix.
    for name in ("CONSOLE", "SERVER", "AUTH", "POLICY", "HEALTH", "BUDGET", "STORE", "COST", "RATE_LIMIT",
                 "SERVER__PORT", "POLICY__ALWAYS_ASK", "UPSTREAM_TIMEOUT_SECONDS", "MCP_CONSOLE_NO_SUCH_SETTING"):
        monkeypatch.setenv(name, "not-json{")
    defaults = Settings.model_validate({}).model_dump()
    assert load_settings().model_dump() == defaults
    assert Settings().model_dump() == defaults  # the model's own sources read the same variables


def test_a_service_setting_is_read_once_it_is_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    class MoreSettings(Settings):
        example_api_url: str | None = None  # all it takes to add a service's setting

    monkeypatch.setenv("EXAMPLE_API_URL", "http://example.test")
    assert MoreSettings().example_api_url == "http://example.test"
    monkeypatch.delenv("EXAMPLE_API_URL")
    monkeypatch.setenv("MCP_CONSOLE_EXAMPLE_API_URL", "http://example.test")
    assert MoreSettings().example_api_url is None


def test_arguments_win_over_the_environment_and_the_environment_over_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, '[server]\nport = "a bad value the environment replaces"\nhost = "10.0.0.1"\n'
                               "[rate_limit]\nper_agent = { max_requests = 1, window_ms = 1000 }\n")
    monkeypatch.setenv("MCP_CONSOLE_SERVER__PORT", "8200")
    monkeypatch.setenv("MCP_CONSOLE_RATE_LIMIT__PER_AGENT__MAX_REQUESTS", "7")
    settings = load_settings(config)
    assert (settings.server.host, settings.server.port) == ("10.0.0.1", 8200)
    # A section takes some keys from the environment and the rest from the file.
    assert (settings.rate_limit.per_agent.max_requests, settings.rate_limit.per_agent.window_ms) == (7, 1000)
    assert load_settings(config, server={"port": 9300}).server.port == 9300


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("MCP_CONSOLE_SERVER__PORT", "eighty-eighty", "environment variable MCP_CONSOLE_SERVER__PORT:"),
    ("MCP_CONSOLE_SERVER__PORT", "99999", "environment variable MCP_CONSOLE_SERVER__PORT:"),
    ("MCP_CONSOLE_SERVER__PROT", "8200", "environment variable MCP_CONSOLE_SERVER__PROT:"),
    ("MCP_CONSOLE_AUTH__TRUST_AGENT_HEADER", "perhaps", "environment variable MCP_CONSOLE_AUTH__TRUST_AGENT_HEADER:"),
    ("MCP_CONSOLE_UPSTREAM_TIMEOUT_SECONDS", "soon", "environment variable MCP_CONSOLE_UPSTREAM_TIMEOUT_SECONDS:"),
    ("COOLIFY_TIMEOUT_SECONDS", "soon", "environment variable COOLIFY_TIMEOUT_SECONDS:"),
    ("MCP_CONSOLE_POLICY__ALWAYS_ASK", "not-json",
     "environment variable MCP_CONSOLE_POLICY__ALWAYS_ASK: not valid JSON"),
    ("MCP_CONSOLE_POLICY__ALWAYS_ASK", '["sometimes"]', "environment variable MCP_CONSOLE_POLICY__ALWAYS_ASK "),
    ("MCP_CONSOLE_CONSOLE__KEYS", "quit=ctrl+x", "environment variable MCP_CONSOLE_CONSOLE__KEYS: not valid JSON"),
    ("MCP_CONSOLE_SERVER", "{", "environment variable MCP_CONSOLE_SERVER: not valid JSON"),
    ("MCP_CONSOLE_SERVER", '{"port": "eighty"}', "environment variable MCP_CONSOLE_SERVER (server.port):"),
])
def test_an_environment_error_names_the_variable_not_the_value(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str) -> None:
    monkeypatch.setenv("COOLIFY_API_TOKEN", SECRET)
    monkeypatch.setenv(variable, value)
    message = _error()
    assert named in message
    assert value not in message and SECRET not in message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "key", "value"), [
    ('[server]\nport = "eighty"\n', "server.port", "eighty"),
    ("[server]\nprot = 8200\n", "server.prot", "8200"),
    ('[policy]\nalways_ask = ["sometimes"]\n', "policy.always_ask.0", "sometimes"),
    ('[cost]\nmode = "guesswork"\n', "cost.mode", "guesswork"),
    ("coolify_api_token = 31415926\n", "coolify_api_token", "31415926"),  # a secret's own bad value
    ("servre = { port = 8200 }\n", "servre", "8200"),
])
def test_a_file_error_names_the_key_and_the_file_not_the_value(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, value: str) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.setenv("MCP_CONSOLE_SERVER__HOST", "127.0.0.2")  # set, valid: not blamed
    config = _config(tmp_path, f'n8n_api_key = "{SECRET}"\n{text}')
    message = _error(config)
    assert f"{key} in config file {config}:" in message
    assert value not in message and SECRET not in message
    assert "MCP_CONSOLE" not in message


def test_an_argument_error_names_the_setting_not_the_value() -> None:
    message = _error(None, server={"port": "eighty"})
    assert "server.port (given explicitly):" in message
    assert "eighty" not in message


def test_a_command_reports_a_bad_variable_on_one_line(tmp_path: Path) -> None:
    environment = {**os.environ, "MCP_CONSOLE_SERVER__PORT": "eighty", "COOLIFY_API_TOKEN": SECRET}
    done = subprocess.run([sys.executable, "-m", "console", "agents", "list", "--db", str(tmp_path / "x.db")],
                          cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "MCP_CONSOLE_SERVER__PORT" in done.stderr
    assert "eighty" not in done.stderr and SECRET not in done.stderr


def test_a_shells_own_variables_break_no_command(tmp_path: Path) -> None:
    environment = {**os.environ, "CONSOLE": "x", "SERVER": "x", "POLICY": "x", "SERVER__PORT": "eighty"}
    db = str(tmp_path / "x.db")
    for command in (["agents", "add", "bot", "--db", db], ["agents", "list", "--db", db]):
        done = subprocess.run([sys.executable, "-m", "console", *command],
                              cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert "bot" in done.stdout


# -- the tests' own environment ------------------------------------------------------------------


def test_the_environment_names_cover_every_setting() -> None:
    environment = settings_environment()
    assert environment.prefix == "MCP_CONSOLE_"
    for name, field in Settings.model_fields.items():
        section = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ours = section or name == "upstream_timeout_seconds"
        assert (name.upper() in environment.names) is not ours, name
        assert environment.covers(f"MCP_CONSOLE_{name.upper()}__X" if ours else name.upper()), name
    assert {"COOLIFY_API_URL", "COOLIFY_API_TOKEN", "COOLIFY_TIMEOUT_SECONDS", "ORCHESTRATOR_URL",
            "ORCHESTRATOR_TOKEN", "POSTGRES_KIDS_ASCENSION_URL", "POSTGRES_OZEAN_LICHT_URL", "GITHUB_TOKEN",
            "PLAYWRIGHT_MCP_COMMAND", "SHADCN_MCP_COMMAND", "MAGICUI_MCP_COMMAND"} <= environment.names
    for name in ("CONSOLE", "SERVER", "SERVER__PORT", "POLICY__ALWAYS_ASK", "UPSTREAM_TIMEOUT_SECONDS", "PATH"):
        assert not environment.covers(name), name


def test_no_settings_variable_is_set_inside_a_test() -> None:
    # The autouse fixture in conftest.py cleared them; the next test runs this one with every one of them set.
    environment = settings_environment()
    assert [name for name in os.environ if environment.covers(name)] == []


def test_the_autouse_fixture_clears_every_settings_variable() -> None:
    environment = settings_environment()
    junk = dict.fromkeys(environment.names, "junk")
    junk.update({f"MCP_CONSOLE_{name.upper()}": "junk" for name in Settings.model_fields})
    junk.update({"MCP_CONSOLE_SERVER__PORT": "junk", "mcp_console_policy__always_ask": "junk"})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::test_no_settings_variable_is_set_inside_a_test"],
        cwd=ROOT, env={**os.environ, **junk}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout[-2000:]
