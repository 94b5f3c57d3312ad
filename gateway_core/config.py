"""Settings: environment variables, an optional TOML file, and defaults.

Precedence: explicit arguments > environment > config file > defaults. In the environment, our own
settings are read only under the prefix MCP_CONSOLE_ (MCP_CONSOLE_SERVER__PORT, MCP_CONSOLE_UPSTREAM_TIMEOUT_SECONDS)
and the services' under their existing names (COOLIFY_API_URL, GITHUB_TOKEN): a shell's own CONSOLE or SERVER is
never read (see `settings_environment`). Secrets are SecretStr, so they never print, log or render; an invalid
setting is reported by its variable or file key, never by its value."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from platformdirs import user_data_path
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from gateway_core.catalog import ServiceSpec
from gateway_core.operations import Risk
from gateway_core.ratelimit import RateLimit

ENV_PREFIX = "MCP_CONSOLE_"  # our own settings' variables; a service's setting keeps its existing name
_NESTED = "__"  # MCP_CONSOLE_SECTION__KEY
# The spec's one variable pattern: POSTGRES_DB_<NAME>_URL is the database <name> (lower case, `_` as `-`).
POSTGRES_DATABASE_URL = re.compile(r"^POSTGRES_DB_(?P<name>[A-Z0-9_]+)_URL$", re.IGNORECASE)


class ConfigError(Exception):
    """The configuration is invalid; the message names the setting and never its value."""


class _Ours:
    """Marks a flat setting of our own: `Annotated[float, OURS]`. Sections are ours without it; any other flat
    setting is a service's, read under its own upper-case name (adding a service setting is adding a field)."""


OURS = _Ours()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=0, le=65535)
    max_body_bytes: int = Field(1 << 20, gt=0)


class StoreSettings(_Section):
    path: Path | None = None  # default: the user's data dir


class AuthSettings(_Section):
    trust_agent_header: bool = False
    refresh_seconds: float = Field(1.0, gt=0, le=2.0)


class CostSettings(_Section):
    mode: Literal["catalog", "measured"] = "catalog"
    usd_per_million_tokens: float = Field(3.0, ge=0)
    chars_per_token: float = Field(4.0, gt=0)


class RateLimitSettings(_Section):
    per_agent: RateLimit = RateLimit(max_requests=600, window_ms=60_000)
    per_service: dict[str, RateLimit] = Field(default_factory=dict)  # overrides the catalog's


class BudgetSettings(_Section):
    daily_usd_per_agent: float | None = Field(None, ge=0)


class PolicySettings(_Section):
    always_ask: list[Risk] = Field(default_factory=list)  # e.g. ["destructive"]: a one-time approval each call
    grant_cache_seconds: float = Field(2.0, gt=0, le=5.0)  # a grant added elsewhere counts within this


class PermissionSettings(_Section):
    # How long a call without options.waitForApproval is held for an operator's decision (the spec's
    # permission_wait_seconds; existing agents send no option): 0 answers `pending` at once.
    wait_seconds: float = Field(0.0, ge=0)
    max_wait: float = Field(120.0, ge=0)  # the cap on options.waitForApproval (and on wait_seconds)
    request_ttl_seconds: float = Field(3600.0, gt=0)
    refile_seconds: float = Field(60.0, gt=0)  # an undecided request is filed again after this (new consoles see it)
    orchestrator_timeout_seconds: float = Field(3.0, gt=0)


class LedgerSettings(_Section):
    flush_interval_seconds: float = Field(0.05, gt=0, le=5.0)


class HealthSettings(_Section):
    interval_seconds: float = Field(30.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)


class PostgresDatabaseSettings(_Section):
    """One database beyond the spec's three: `[postgres.databases."<name>"]`, or POSTGRES_DB_<NAME>_URL."""

    url: SecretStr  # postgresql://user:password@host:port/database
    aliases: list[str] = Field(default_factory=list)  # other names calls may give it (the slash form's too)
    read_only: bool = True  # false: `execute` may write here
    max_rows: int = Field(1000, ge=1, le=100_000)  # the most rows one call returns


class PostgresSettings(_Section):
    databases: dict[str, PostgresDatabaseSettings] = Field(default_factory=dict)
    lock_timeout_ms: int = Field(1000, gt=0)  # a statement waiting longer for a lock is refused (-32008)


class McpSettings(_Section):
    """The MCP front door (`POST /mcp`)."""

    allowed_hosts: list[str] = Field(default_factory=list)  # Host headers taken beside the bound host and localhost
    allowed_origins: list[str] = Field(default_factory=list)  # Origin headers taken (none: only requests without one)
    max_inflight: int = Field(512, ge=1)  # requests at once; beyond: 503 with Retry-After
    max_calls_per_agent: int = Field(16, ge=1)  # tool calls at once per agent; beyond: a -32005 tool error
    approval_wait_seconds: float = Field(45.0, ge=0)  # how long a call waits for an operator (capped by max_wait)
    progress_interval_seconds: float = Field(5.0, gt=0)  # progress while a call waits, to clients that ask
    first_list_wait_seconds: float = Field(10.0, ge=0)  # how long a listing waits for an upstream never listed


McpServerName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,23}$")]


class McpServerSettings(_Section):
    """One MCP upstream: `[mcp_servers.NAME]`, a command the gateway starts (stdio) or a URL it dials."""

    command: list[str] | None = None  # argv: the program and its arguments
    url: str | None = None  # Streamable HTTP
    env: dict[str, SecretStr] = Field(default_factory=dict)  # the child's only variables beside the SDK's few
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    cwd: Path | None = None
    isolation: Literal["shared", "per_agent"] = "shared"  # per_agent: a child per calling agent
    protocol: Literal["legacy", "auto"] = "legacy"
    start: Literal["eager", "lazy"] = "eager"
    timeout_seconds: float | None = Field(None, gt=0)  # a call's limit (else upstream_timeout_seconds)
    startup_timeout_seconds: float = Field(60.0, gt=0)
    max_concurrency: int = Field(8, ge=1)
    description: str | None = None
    avg_tokens_per_call: int = Field(300, ge=0)
    cost_per_call: float = Field(0.0009, ge=0)
    tools: list[str] | None = None  # an allow-list of tool names (None: every tool)
    risk: dict[str, Risk] = Field(default_factory=dict)  # tool → risk, over the tool's own hints


class ConsoleSettings(_Section):
    # Binding id → keys, e.g. {"quit" = "ctrl+q"}: remaps the console's keys (ids in `?` help).
    keys: dict[str, str] = Field(default_factory=dict)
    snooze_seconds: float = Field(60.0, ge=0)  # after esc on a request, new ones wait this long for r
    # Keys pressed within this long of a request coming up are ignored: a key meant for what was on screen
    # (typing, or a second `a` after a decision, when the next request opens) must not decide one unread.
    decision_guard_seconds: float = Field(0.4, ge=0, le=5)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="forbid")

    # Ours, read as MCP_CONSOLE_SERVER__PORT, MCP_CONSOLE_UPSTREAM_TIMEOUT_SECONDS, ...
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()
    cost: CostSettings = CostSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    budget: BudgetSettings = BudgetSettings()
    policy: PolicySettings = PolicySettings()
    permission: PermissionSettings = PermissionSettings()
    ledger: LedgerSettings = LedgerSettings()
    health: HealthSettings = HealthSettings()
    console: ConsoleSettings = ConsoleSettings()
    postgres: PostgresSettings = PostgresSettings()
    mcp: McpSettings = McpSettings()
    mcp_servers: dict[McpServerName, McpServerSettings] = Field(default_factory=dict)
    upstream_timeout_seconds: Annotated[float, OURS] = Field(30.0, gt=0)

    # Services, under the existing environment variable names.
    coolify_api_url: str | None = None
    coolify_api_token: SecretStr | None = None
    coolify_timeout_seconds: float = Field(30.0, gt=0)
    coolify_poll_seconds: float = Field(2.0, gt=0)  # first interval when following a deployment
    orchestrator_url: str | None = None
    orchestrator_token: SecretStr | None = None  # an operator token, for an orchestrator of ours elsewhere
    http_timeout_ms: int = Field(30_000, gt=0)  # one upstream HTTP request (mem0, minio)
    # postgres: the spec's three databases, each by URL or by parts (URLs hold passwords: secrets).
    postgres_ka_url: SecretStr | None = None
    postgres_kids_ascension_url: SecretStr | None = None  # accepted for POSTGRES_KA_URL
    postgres_ka_host: str | None = None
    postgres_ka_port: int = Field(5432, ge=1, le=65535)
    postgres_ka_database: str = "kids-ascension"
    postgres_ka_user: str = "postgres"
    postgres_ka_password: SecretStr | None = None
    postgres_ol_url: SecretStr | None = None
    postgres_ozean_licht_url: SecretStr | None = None  # accepted for POSTGRES_OL_URL
    postgres_ol_host: str | None = None
    postgres_ol_port: int = Field(5432, ge=1, le=65535)
    postgres_ol_database: str = "ozean-licht"
    postgres_ol_user: str = "postgres"
    postgres_ol_password: SecretStr | None = None
    postgres_shared_url: SecretStr | None = None
    postgres_shared_host: str | None = None
    postgres_shared_port: int = Field(32771, ge=1, le=65535)
    postgres_shared_database: str = "shared-users-db"
    postgres_shared_user: str = "postgres"
    postgres_shared_password: SecretStr | None = None
    db_pool_min: int = Field(2, ge=0)
    db_pool_max: int = Field(10, ge=1)
    db_idle_timeout_ms: int = Field(10_000, gt=0)  # an idle pooled connection is closed after this
    default_timeout_ms: int = Field(30_000, gt=0)  # connecting, or waiting for a pooled connection
    db_query_timeout_ms: int = Field(10_000, gt=0)  # statement_timeout
    mem0_api_url: str | None = None
    mem0_api_key: SecretStr | None = None  # sent as X-API-Key
    mem0_api_flavor: Literal["ozean", "mem0"] = "ozean"  # ozean: the upstream's own wrapper; mem0: the stock server
    n8n_api_url: str | None = None  # the instance root (with or without /api/v1)
    n8n_api_key: SecretStr | None = None
    n8n_webhook_url: str | None = None  # where n8n's webhooks answer, when not the root
    n8n_webhook_timeout_ms: int = Field(10_000, gt=0)
    cloudflare_api_token: SecretStr | None = None
    cloudflare_account_id: str | None = None
    cloudflare_zone_id: str | None = None  # the zone used when a call names none
    cloudflare_api_url: str | None = None  # default https://api.cloudflare.com/client/v4 (tests point it elsewhere)
    github_pat: SecretStr | None = None
    github_token: SecretStr | None = None  # accepted for GITHUB_PAT
    github_app_id: str | None = None  # a GitHub App instead of a token: with the key and the installation
    github_private_key: SecretStr | None = None  # PEM, PKCS#1 or PKCS#8 (newlines may have become spaces)
    github_installation_id: str | None = None
    github_api_url: str | None = None  # default https://api.github.com (GHES, tests)
    minio_endpoint: str | None = None  # host, host:port or a URL
    minio_port: int = Field(9000, ge=1, le=65535)
    minio_use_ssl: bool = False
    minio_access_key: str | None = None
    minio_secret_key: SecretStr | None = None
    minio_region: str = "us-east-1"
    minio_default_bucket: str | None = None  # the bucket of a call that names none
    minio_auto_create_buckets: bool = False  # an upload to a missing bucket creates it (else -32007)
    max_file_size_mb: float = Field(500, gt=0)
    allowed_file_types: str = "video/*,image/*,application/pdf"  # comma list; `type/*` allows a whole type
    presigned_url_expiry_seconds: int = Field(300, ge=1, le=604_800)
    playwright_mcp_command: str | None = None
    shadcn_mcp_command: str | None = None
    magicui_mcp_command: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init arguments with the lowest priority (see load_settings).
        return (init_settings, *_environment_sources(settings_cls))

    def setting(self, env_name: str) -> str | None:
        """A service setting's plain value by its environment variable name (for handlers only)."""
        value = getattr(self, env_name.lower(), None)
        if isinstance(value, SecretStr):
            return value.get_secret_value() or None
        return value or None

    def missing_settings(self, spec: ServiceSpec) -> list[str]:
        return [" or ".join(group) for group in spec.required_settings  # an alternative "A + B" needs both
                if not any(all(self._is_set(name) for name in alternative.split(" + ")) for alternative in group)]

    def _is_set(self, variable: str) -> bool:
        """A service's setting by its name, or a key of ours by its variable (MCP_CONSOLE_POSTGRES__DATABASES)."""
        if not variable.upper().startswith(ENV_PREFIX):
            return bool(self.setting(variable))
        value: Any = self
        for part in variable[len(ENV_PREFIX):].lower().split(_NESTED):
            value = getattr(value, part, None)
        return bool(value)

    @property
    def store_path(self) -> Path:
        return self.store.path or default_store_path()


def default_store_path() -> Path:
    return user_data_path("mcp-console") / "mcp-console.db"


# -- the environment -----------------------------------------------------------------------------


def _is_ours(field: FieldInfo) -> bool:
    """A section, or a flat setting marked OURS; anything else is a service's."""
    section = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    return section or any(mark is OURS for mark in field.metadata)


def _our_fields(settings_cls: type[BaseSettings]) -> frozenset[str]:
    return frozenset(name for name, field in settings_cls.model_fields.items() if _is_ours(field))


class SettingsEnvironment(NamedTuple):
    """The environment variables the settings read (see `settings_environment`)."""

    prefix: str  # our own settings, all under it: MCP_CONSOLE_SERVER__PORT, MCP_CONSOLE_UPSTREAM_TIMEOUT_SECONDS
    names: frozenset[str]  # the services' settings, each under its existing name: COOLIFY_API_URL, GITHUB_TOKEN
    patterns: tuple[re.Pattern[str], ...] = ()  # services' settings named by a pattern: POSTGRES_DB_<NAME>_URL

    def covers(self, variable: str) -> bool:
        """Whether `variable` is a settings variable (matched case-insensitively, as the settings read them)."""
        name = variable.upper()
        return name.startswith(self.prefix) or name in self.names or any(p.match(name) for p in self.patterns)


def settings_environment() -> SettingsEnvironment:
    """The environment variables the settings read, derived from the model.

    Our own settings (a section, or a flat field marked OURS) are read under `prefix` only: a section's keys as
    MCP_CONSOLE_<SECTION>__<KEY> (deeper keys with more `__`) or the whole section as JSON in
    MCP_CONSOLE_<SECTION>; a flat setting as MCP_CONSOLE_<NAME>. Every other field is a service's, read under
    exactly its upper-case name, one of `names`; POSTGRES_DB_<NAME>_URL (one of `patterns`) is a database of
    `[postgres.databases]`. No other variable is read. tests/conftest.py clears every variable this covers
    before each test."""
    services = frozenset(name.upper() for name in Settings.model_fields.keys() - _our_fields(Settings))
    return SettingsEnvironment(ENV_PREFIX, services, (POSTGRES_DATABASE_URL,))


def _postgres_database_urls() -> dict[str, Any]:
    """POSTGRES_DB_<NAME>_URL variables as `postgres.databases.<name>.url`."""
    databases = {match["name"].lower().replace("_", "-"): {"url": value} for variable, value in os.environ.items()
                 if (match := POSTGRES_DATABASE_URL.match(variable))}
    return {"postgres": {"databases": databases}} if databases else {}


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' environment source, restricted to some fields' own variables, that names the variable
    whose value is not JSON (its own SettingsError names only the field)."""

    def __init__(self, settings_cls: type[BaseSettings], fields: frozenset[str], prefix: str) -> None:
        super().__init__(settings_cls, case_sensitive=False, env_prefix=prefix,
                         env_nested_delimiter=_NESTED if prefix else None)
        # Only these fields' variables are seen, so a shell's CONSOLE or SERVER__PORT, or a misplaced
        # MCP_CONSOLE_COOLIFY_API_URL, never reaches a field. (Keys are lower-case: case_sensitive=False.)
        exact = {(prefix + name).lower() for name in fields}
        nested = tuple(name + _NESTED for name in exact) if prefix else ()
        self.env_vars = {name: value for name, value in self.env_vars.items()
                         if name in exact or name.startswith(nested)}

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:  # the field's own variable, e.g. MCP_CONSOLE_SERVER='{'
            raise _undecodable(self.env_prefix + field_name, exc) from None

    def explode_env_vars(self, field_name: str, field: FieldInfo,
                         env_vars: Mapping[str, str | None]) -> dict[str, Any]:
        # One variable at a time, so that a value that is not JSON is blamed on its own variable.
        exploded: dict[str, Any] = {}
        for name, value in env_vars.items():
            try:
                exploded = _deep_merge(exploded, super().explode_env_vars(field_name, field, {name: value}))
            except ValueError as exc:
                raise _undecodable(name, exc) from None
        return exploded


def _environment_sources(settings_cls: type[BaseSettings]) -> tuple[_EnvironmentSource, _EnvironmentSource]:
    ours = _our_fields(settings_cls)
    return (_EnvironmentSource(settings_cls, ours, ENV_PREFIX),
            _EnvironmentSource(settings_cls, frozenset(settings_cls.model_fields.keys() - ours), ""))


def _undecodable(variable: str, exc: ValueError) -> ConfigError:
    # json's message says where the text breaks, never what it holds.
    reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
    return ConfigError(f"invalid settings: environment variable {_as_set(variable)}: not valid JSON ({reason}); "
                       "lists and tables are given in JSON")


def _as_set(variable: str) -> str:
    """The variable's name as it is set (names are read case-insensitively), else in upper case."""
    return next((name for name in os.environ if name.upper() == variable.upper()), variable.upper())


# -- loading -------------------------------------------------------------------------------------


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Reads the config file (if any) under the environment, then applies `overrides` on top.

    Raises ConfigError naming the environment variable, file key or argument at fault, never its value."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_file}") from None
        except OSError as exc:
            raise ConfigError(f"config file {config_file} cannot be read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {config_file} is not UTF-8 text") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
        file_values = {key.lower(): value for key, value in file_values.items()}
    environment: dict[str, Any] = _postgres_database_urls()  # under MCP_CONSOLE_POSTGRES__DATABASES, which wins
    try:
        for source in _environment_sources(Settings):
            environment = _deep_merge(environment, source())  # the sources read disjoint fields
    except SettingsError as exc:  # not expected (the sources name the variable themselves); its text has no value
        raise ConfigError(f"invalid settings in the environment: {exc}") from None
    # The layers are merged unvalidated, so a section can take some keys from the environment and the rest
    # from the file; validated once, each error is traced back to the layer that gave the value.
    merged = _deep_merge(_deep_merge(file_values, environment), overrides)
    try:
        # (model_validate runs BaseSettings.__init__, which reads the environment again, under `merged`: the
        # same values, already in it.)
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, overrides, environment, file_values, config_file)) from None


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError, overrides: dict[str, Any], environment: dict[str, Any],
              file_values: dict[str, Any], config_file: Path | None) -> str:
    problems = [f"{_origin(error['loc'], overrides, environment, file_values, config_file)}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)]  # never the value
    return "invalid settings: " + "; ".join(problems)


def _origin(loc: tuple[int | str, ...], overrides: dict[str, Any], environment: dict[str, Any],
            file_values: dict[str, Any], config_file: Path | None) -> str:
    """Where the value at `loc` came from: the layer with the most specific value on its path, in priority order
    (a missing key is blamed on whoever gave its section)."""
    key = ".".join(str(part) for part in loc)
    for depth in range(len(loc), 0, -1):
        path = loc[:depth]
        if _holds(overrides, path):
            return f"{key} (given explicitly)"
        if _holds(environment, path):
            variable = _variable(path)
            exact = variable.upper() == _variable_name(loc)
            return f"environment variable {variable}" + ("" if exact else f" ({key})")
        if _holds(file_values, path):
            return f"{key} in config file {config_file}"
    return key


def _holds(values: Any, path: tuple[int | str, ...]) -> bool:
    for part in path:
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def _variable_name(path: tuple[int | str, ...]) -> str:
    """The variable that reads exactly `path`: COOLIFY_API_URL, MCP_CONSOLE_SERVER__PORT."""
    field = Settings.model_fields.get(str(path[0]))
    if field is not None and not _is_ours(field):
        return str(path[0]).upper()
    return ENV_PREFIX + _NESTED.join(str(part) for part in path).upper()


def _variable(path: tuple[int | str, ...]) -> str:
    """The set variable(s) that gave the environment's value at `path`: the most specific one at or above it
    (MCP_CONSOLE_SERVER='{"port": ...}' gives server.port), else those below it."""
    set_names = {name.upper() for name in os.environ}
    for depth in range(len(path), 0, -1):
        if (name := _variable_name(path[:depth])) in set_names:
            return _as_set(name)
    below = sorted(name for name in os.environ if name.upper().startswith(_variable_name(path) + _NESTED))
    return ", ".join(below) or _variable_name(path)
