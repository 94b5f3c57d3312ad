"""Settings: the existing environment variable names, an optional TOML file, and defaults.

Precedence: explicit arguments > environment > config file > defaults. Secrets are SecretStr, so
they never print, log or render."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_data_path
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway_core.catalog import ServiceSpec
from gateway_core.operations import Risk
from gateway_core.ratelimit import RateLimit


class ConfigError(Exception):
    """The configuration is invalid; the message names the setting and never its value."""


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
    max_wait: float = Field(120.0, ge=0)  # the cap on options.waitForApproval
    request_ttl_seconds: float = Field(3600.0, gt=0)
    orchestrator_timeout_seconds: float = Field(3.0, gt=0)


class LedgerSettings(_Section):
    flush_interval_seconds: float = Field(0.05, gt=0, le=5.0)


class HealthSettings(_Section):
    interval_seconds: float = Field(30.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)


class ConsoleSettings(_Section):
    # Binding id → keys, e.g. {"quit" = "ctrl+q"}: remaps the console's keys (ids in `?` help).
    keys: dict[str, str] = Field(default_factory=dict)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_nested_delimiter="__", case_sensitive=False, extra="forbid")

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
    upstream_timeout_seconds: float = Field(30.0, gt=0)

    # Services, under the existing environment variable names.
    coolify_api_url: str | None = None
    coolify_api_token: SecretStr | None = None
    coolify_timeout_seconds: float = Field(30.0, gt=0)
    coolify_poll_seconds: float = Field(2.0, gt=0)  # first interval when following a deployment
    orchestrator_url: str | None = None
    orchestrator_token: SecretStr | None = None  # an operator token, for an orchestrator of ours elsewhere
    postgres_kids_ascension_url: SecretStr | None = None  # URLs with passwords in them
    postgres_ozean_licht_url: SecretStr | None = None
    mem0_api_url: str | None = None
    n8n_api_url: str | None = None
    n8n_api_key: SecretStr | None = None
    cloudflare_api_token: SecretStr | None = None
    cloudflare_account_id: str | None = None
    github_token: SecretStr | None = None
    minio_endpoint: str | None = None
    minio_access_key: str | None = None
    minio_secret_key: SecretStr | None = None
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
        return (init_settings, env_settings)

    def setting(self, env_name: str) -> str | None:
        """A service setting's plain value by its environment variable name (for handlers only)."""
        value = getattr(self, env_name.lower(), None)
        if isinstance(value, SecretStr):
            return value.get_secret_value() or None
        return value or None

    def missing_settings(self, spec: ServiceSpec) -> list[str]:
        return [" or ".join(group) for group in spec.required_settings
                if not any(self.setting(name) for name in group)]

    @property
    def store_path(self) -> Path:
        return self.store.path or default_store_path()


def default_store_path() -> Path:
    return user_data_path("mcp-console") / "mcp-console.db"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Reads the config file (if any) under the environment, then applies `overrides` on top."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        try:
            file_values = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
        file_values = {key.lower(): value for key, value in file_values.items()}
    try:
        from_env = Settings()
        # Environment wins over the file: keep the file's value only where the environment set nothing.
        merged = _deep_merge(_deep_merge(file_values, from_env.model_dump(exclude_unset=True)), overrides)
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from None


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    where = f" (config file {config_file} or environment)" if config_file else " (environment)"
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    )
    return f"invalid settings{where}: {problems}"
