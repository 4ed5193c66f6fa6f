"""The provider table: which providers, their accounts, keys, limit profiles, models and pools.

Built-in (`stepgraph/data/providers/builtin.json`): OpenRouter, Ollama Cloud, Groq, Cerebras and NVIDIA;
any OpenAI-compatible endpoint can be added through `STEPGRAPH_PROVIDERS` (JSON, or a path to a YAML/JSON
file). Limits belong to the DEPLOYMENT (provider account + model variant), never to a key: every key of
one account shares its limiters. A free model carries the provider's `limits_profile` (the platform
caps, shared by all free models of the account); a paid model carries `paid_limits_profile`; a model's
own `limits_profile` overrides either, and `limit_overrides` changes single limits of the account.

A pool is a named group of equivalent deployments (`"pools": {"gpt-oss-120b": ["groq:openai/gpt-oss-120b",
...]}`); a chain entry, or an execution's `config.models` entry, is `pool:NAME` or one model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stepgraph.errors import ConfigError
from stepgraph.providers.capabilities import ALL, Capability

ENV = "STEPGRAPH_PROVIDERS"
POOL_PREFIX = "pool:"
# Which rate-limit headers a provider sends (stepgraph.providers.dialects reads them):
# openrouter: X-RateLimit-Limit/-Remaining/-Reset on 429 only; openai: x-ratelimit-*-requests|tokens on
# every response (Groq, Cerebras); none: nothing to learn from.
HeaderDialect = Literal["openrouter", "openai", "none"]
# usage: token limits count what the reply reports; reserved: the provider counts prompt + max completion
# before it runs (Cerebras), so the reservation stands and only the prompt estimate is corrected.
TokenAccounting = Literal["usage", "reserved"]


class ModelSpec(BaseModel):
    # A misspelt key would otherwise be dropped silently and its default used instead.
    model_config = ConfigDict(extra="forbid")

    context_tokens: int = Field(131_072, gt=0)
    max_tokens: int = Field(
        4096, gt=0, description="max_tokens sent with every call (and reserved on token limits)"
    )
    free: bool = False
    usd_per_prompt_token: float = Field(0.0, ge=0)
    usd_per_completion_token: float = Field(0.0, ge=0)
    stream: bool = Field(False, description="Request SSE streaming (usage and cost come in the last chunk)")
    limits_profile: str | None = Field(
        None, description="This model's own limits (default: the provider's free or paid profile)"
    )
    length_retry_max_tokens: int | None = Field(
        None, gt=0, description="Retry a `length` or empty reply once with this max_tokens"
    )
    capabilities: list[Capability] = Field(
        default_factory=lambda: list(ALL),
        description="What the model serves: tools (function calling), structured_output (JSON mode), "
        "json_schema (schema-constrained output); a call that needs one skips models without it",
    )


class ProviderSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    account: str = "main"
    limits_profile: str = Field("unlimited", description="Limits of the account's free models")
    paid_limits_profile: str = Field("unlimited", description="Limits of the account's paid models")
    limit_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Changed fields per limit name, e.g. {'rpm': {'capacity': 25}}"
    )
    header_dialect: HeaderDialect = "none"
    token_accounting: TokenAccounting = "usage"
    keys_env: str | None = Field(None, description="Env var with a key or 'label=key,label=key'")
    secret_id: str | None = Field(None, description="Secrets Manager secret: {'keys': [{'label', 'key'}]}")
    # The account balance (GET /credits) needs a management key, which cannot make model calls: it is
    # read by the credits poller only, from its own env var or secret ({"key": "..."}).
    management_key_env: str | None = Field(None, description="Env var with the account's management key")
    management_secret_id: str | None = Field(None, description="Secrets Manager secret: {'key': '...'}")
    attribution: bool = Field(False, description="Send OpenRouter's HTTP-Referer / X-OpenRouter-Title")
    models: dict[str, ModelSpec] = Field(default_factory=dict)

    def deployment(self, provider: str, model: str) -> tuple[str, str]:
        """`(limiter key, limits profile)` of one model: free models of an account share the key
        `provider:account` (the platform counts them together, and the credits poller reads that day
        counter); a paid model or one with its own profile counts apart, `provider:account:model`."""
        spec = self.models[model]
        if spec.limits_profile is not None:
            return f"{provider}:{self.account}:{model}", spec.limits_profile
        if spec.free:
            return f"{provider}:{self.account}", self.limits_profile
        return f"{provider}:{self.account}:{model}", self.paid_limits_profile


@dataclass(frozen=True)
class Deployment:
    """One place a model is served: provider + account + model. `name` is how a chain or pool spells it;
    `limiter_key` is what its limits (and learned lowerings) are kept under; `health_key` its breaker's."""

    provider: str
    account: str
    model: str
    limiter_key: str
    profile: str

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def health_key(self) -> str:
        return f"{self.provider}:{self.account}:{self.model}"


class ProviderTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    providers: dict[str, ProviderSpec]
    pools: dict[str, list[str]] = Field(
        default_factory=dict, description="name -> equivalent deployments ('provider:model')"
    )
    chain: list[str] = Field(min_length=1, description="'provider:model' or 'pool:NAME' in the order to try")

    @model_validator(mode="after")
    def _pools_name_models(self) -> ProviderTable:
        for name, members in self.pools.items():
            if not members:
                raise ValueError(f"pool {name!r} has no deployments")
            for i, member in enumerate(members):
                if member.startswith(POOL_PREFIX):
                    raise ValueError(f"pools.{name}[{i}]: a pool cannot hold another pool ({member!r})")
        return self

    def route(self, entry: str) -> tuple[str, str]:
        """'provider:model' (split at the first ':' that names a provider) or a bare model name."""
        for name in self.providers:
            if entry.startswith(name + ":"):
                model = entry[len(name) + 1 :]
                if model not in self.providers[name].models:
                    raise ConfigError(
                        f"model {model!r} is not in provider {name!r}",
                        hint=f"known: {sorted(self.providers[name].models)}",
                    )
                return name, model
        owners = [n for n, p in self.providers.items() if entry in p.models]
        if not owners:
            if ":" in entry:
                raise ConfigError(
                    f"unknown pool or provider in {entry!r}",
                    hint=f"pools: {sorted(self.pools)}; providers: {sorted(self.providers)} "
                    "(write 'pool:NAME' or 'provider:model')",
                )
            raise ConfigError(
                f"model {entry!r} is in no provider",
                hint="write it as 'provider:model' or 'pool:NAME', or add it to STEPGRAPH_PROVIDERS",
            )
        return owners[0], entry

    def members(self, entry: str) -> list[tuple[str, str]]:
        """`(provider, model)` of every deployment a chain entry names: a pool's members in order, or one."""
        if entry.startswith(POOL_PREFIX):
            name = entry[len(POOL_PREFIX) :]
            if name not in self.pools:
                raise ConfigError(
                    f"unknown pool or provider: no pool {name!r}",
                    hint=f"pools: {sorted(self.pools) or 'none'} (add it under 'pools' in {ENV})",
                )
            out = []
            for i, member in enumerate(self.pools[name]):
                try:
                    out.append(self.route(member))
                except ConfigError as exc:
                    raise ConfigError(f"pool {name!r}[{i}]: {exc.message}", hint=exc.hint) from None
            return out
        return [self.route(entry)]

    def deployment(self, provider: str, model: str) -> Deployment:
        spec = self.providers[provider]
        key, profile = spec.deployment(provider, model)
        return Deployment(provider, spec.account, model, key, profile)

    def deployments(self, entry: str) -> list[Deployment]:
        """The deployments of one chain entry (`pool:NAME` or a model)."""
        return [self.deployment(p, m) for p, m in self.members(entry)]

    def price(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for a reply of `model` by the table's per-token prices; None for a model it does not list
        (the usage record then says the cost is missing rather than a silent 0)."""
        for spec in self.providers.values():
            if model in spec.models:
                m = spec.models[model]
                return prompt_tokens * m.usd_per_prompt_token + completion_tokens * m.usd_per_completion_token
        return None


def _builtin() -> dict[str, Any]:
    text = resources.files("stepgraph").joinpath("data/providers/builtin.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


DEFAULT_TABLE: dict[str, Any] = _builtin()


def _parse(raw: str) -> dict[str, Any]:
    path = Path(raw)
    if not raw.lstrip().startswith("{") and path.is_file():
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            mark = getattr(exc, "problem_mark", None)
            detail = f"{getattr(exc, 'problem', exc)}, line {mark.line + 1}" if mark else str(exc)
            raise ConfigError(f"{ENV}: cannot read {path} ({detail})") from None
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{ENV} is neither JSON nor a file ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("providers", {}), dict):
        raise ConfigError(f"{ENV} must be a mapping with 'providers' (a mapping) and 'chain' (a list)")
    return data


def load_provider_table(providers: str | None = None, *, env: Mapping[str, str]) -> ProviderTable:
    """The table from `STEPGRAPH_PROVIDERS` (or the built-in one); base URLs can be moved by
    `STEPGRAPH_<PROVIDER>_BASE_URL` in `env` (local runs point them at the simulator)."""
    source = ENV if providers else "built-in provider table"
    data = _parse(providers) if providers else json.loads(json.dumps(DEFAULT_TABLE))
    for name, spec in data.get("providers", {}).items():
        override = env.get(f"STEPGRAPH_{name.upper()}_BASE_URL")
        if override and isinstance(spec, dict):
            spec["base_url"] = override
    try:
        table = ProviderTable.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{source}: {where.replace('Value error, ', '')}") from None
    for name, members in table.pools.items():
        for i, member in enumerate(members):
            try:
                table.route(member)
            except ConfigError as exc:
                raise ConfigError(f"{source}: pools.{name}[{i}]: {exc.message}", hint=exc.hint) from None
    for i, entry in enumerate(table.chain):
        try:
            table.members(entry)
        except ConfigError as exc:
            raise ConfigError(f"{source}: chain.{i}: {exc.message}", hint=exc.hint) from None
    return table
