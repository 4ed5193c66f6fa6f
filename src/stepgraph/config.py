"""Settings: one pydantic-settings model, env vars prefixed `STEPGRAPH_`, validated once.

CLI flags override env vars by passing keyword arguments to `load_settings`. A bad value
becomes a one-line `ConfigError` naming the variable and what it accepts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stepgraph import resources
from stepgraph.errors import ConfigError

ENV_PREFIX = "STEPGRAPH_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)

    bucket: str = Field(
        default=resources.DATA_BUCKET_NAME, description="Data bucket (checkpoints/, usage/, ...)"
    )
    limiter_table: str = Field(default=resources.LIMITER_TABLE_NAME, description="DynamoDB limiter table")
    time_scale: float = Field(
        default=1.0,
        gt=0,
        le=1.0,
        description="Multiply provider windows and waits by this (local runs: 0.05 makes a minute 3 s)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    providers: str | None = Field(
        default=None, description="Provider table as JSON or a path to a YAML/JSON file (default: built-in)"
    )
    step_margin_s: float = Field(
        default=20.0, ge=0, description="End a step when the Lambda has less than this many seconds left"
    )
    usage_gzip: bool = False
    map_concurrency: int = Field(
        default=resources.DEFAULT_MAX_CONCURRENCY,
        ge=1,
        le=10_000,
        description="Items run at once when an execution's input does not say (config.max_concurrency)",
    )
    usage_flush_every: int = Field(
        default=1,
        ge=0,
        description="Write usage records to S3 after this many (1: after every attempt, so even a killed "
        "Lambda keeps them; 0: once when the step ends)",
    )
    daily_budget_usd: float | None = Field(default=None, ge=0)
    total_budget_usd: float | None = Field(default=None, ge=0)
    endpoint_url: str | None = Field(
        default=None, description="AWS endpoint (local stack), e.g. http://127.0.0.1:5000"
    )
    limit_margin: float = Field(
        default=0.02,
        ge=0,
        le=0.5,
        description="Sliding windows are this much longer than the provider's (arrival jitter)",
    )
    clock_skew_s: float = Field(
        default=0.5,
        ge=0,
        le=30,
        description="Largest clock difference between any two workers; sliding windows are paced this much "
        "longer so the provider's limit holds in real time",
    )
    limits_overrides: str | None = Field(
        default=None,
        description='JSON overrides of the primary provider\'s limits, e.g. {"rpm": {"capacity": 10}}',
    )
    dynamodb_endpoint_url: str | None = Field(
        default=None, description="DynamoDB endpoint of the limiter (local runs)"
    )

    @field_validator("limits_overrides")
    @classmethod
    def _overrides_shape(cls, v: str | None) -> str | None:
        # Checked here, once, so a typo fails at start-up and not inside the first model call.
        if not v:
            return v
        try:
            data = json.loads(v)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg})") from None
        if not isinstance(data, dict) or not all(isinstance(f, dict) for f in data.values()):
            raise ValueError('must map limit names to fields, e.g. {"rpm": {"capacity": 10}}')
        return v


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        ctx = err.get("ctx") or {}
        allowed = ctx.get("expected")
        msg = err["msg"] + (f" (allowed: {allowed})" if allowed and str(allowed) not in err["msg"] else "")
        value = err.get("input")
        shown = "" if value is None or isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{ENV_PREFIX}{field.upper()}: {msg}{shown}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read env vars (and CLI overrides that are not None) and validate them once."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError(_describe(exc), hint="fix the variable or flag and run again") from None


class _MappingSettings(Settings):
    """Settings read from the values given, never from the process environment."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, *_: Any, **__: Any) -> tuple:
        return (init_settings,)


def settings_from(env: Mapping[str, str], **overrides: Any) -> Settings:
    """Settings from an environment mapping (a function's, or one a test builds), validated once.

    Example:
        >>> settings_from({"STEPGRAPH_BUCKET": "my-bucket"}).bucket
        'my-bucket'
    """
    values: dict[str, Any] = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.upper().startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in Settings.model_fields
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return _MappingSettings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc), hint="fix the variable or flag and run again") from None
