"""Build the router: one route per deployment of the chain (a pool's members side by side), each with
its keys, limiter, circuit breaker and client."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.providers.keys import KeyRing, load_keys
from stepgraph.providers.routed import RoutedChatModel
from stepgraph.providers.router import ModelRouter, Route, RunState
from stepgraph.providers.table import POOL_PREFIX, ProviderSpec, ProviderTable


def spec_source(table: ProviderTable, provider: str) -> str:
    spec = table.providers[provider]
    where = [
        w
        for w in (spec.keys_env and f"env {spec.keys_env}", spec.secret_id and f"secret {spec.secret_id}")
        if w
    ]
    return " or ".join(where) or "no key source configured"


log = logging.getLogger(__name__)
ATTRIBUTION = {"HTTP-Referer": "https://github.com/stepgraph/stepgraph", "X-OpenRouter-Title": "stepgraph"}
# (provider, spec, model) -> the deployment's limiter, or None when it has no limits.
LimiterFactory = Callable[[str, ProviderSpec, str], Any]
# (deployment health key) -> its shared CircuitBreaker, or None.
BreakerFactory = Callable[[str], Any]
_warned: set[str] = set()  # providers already reported as left out of a pool (once per process)
# A model whose next slot is further away than this (real seconds) is passed over for the next model of
# the chain (the router's `fallback_after_s`); a time-scaled run scales it with its day, or a spent free
# day with less than this left would hold the item instead of sending it to the paid variant.
FALLBACK_AFTER_S = 300.0


def make_llm_factory(
    spec: ProviderSpec, model: str, *, timeout_s: float = 120.0, http_client: Any = None
) -> Callable[[str], Any]:
    """key -> a ChatOpenAI (that keeps `cost` and the generation id on streams), cached per key.
    `http_client` (an `httpx.Client`) replaces the default transport, e.g. a replay of recorded replies."""

    @lru_cache(maxsize=8)
    def build(key: str) -> Any:
        from stepgraph.providers.chat import UsageCapturingChatOpenAI

        # `streaming` is set only when the table asks for it: set to False it would also turn the
        # caller's `stream()` into one blocking call.
        streams: dict[str, Any] = (
            {"streaming": True} if model in spec.models and spec.models[model].stream else {}
        )
        return UsageCapturingChatOpenAI(
            model=model,
            base_url=spec.base_url,
            api_key=key,  # type: ignore[arg-type]
            max_retries=0,  # every HTTP attempt passes the limiter and is recorded
            **streams,
            stream_usage=True,  # a stream's last chunk carries its usage and cost
            # Always a realistic budget: a provider that reserves max_tokens up front (Cerebras) would
            # otherwise count its own, much larger, default against the token limits.
            max_tokens=spec.models[model].max_tokens if model in spec.models else None,  # type: ignore[call-arg]
            include_response_headers=spec.header_dialect == "openai",
            timeout=timeout_s,
            default_headers=ATTRIBUTION if spec.attribution else None,
            http_client=http_client,
        )

    return build


def build_chat_model(
    table: ProviderTable,
    run_config: Any = None,
    *,
    limiter_factory: LimiterFactory | None = None,
    breaker_factory: BreakerFactory | None = None,
    budget_guard: Any = None,
    callbacks: list[Any] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    remaining_s: Callable[[], float] = lambda: float("inf"),
    run_state: RunState | None = None,
    keyrings: dict[str, KeyRing] | None = None,
    secrets_client: Any = None,
    env: Mapping[str, str] | None = None,
    metrics: Any = None,
    http_client: Any = None,
    time_scale: float = 1.0,
    role: str = "default",
) -> RoutedChatModel:
    """The chat model of `role` over its chain in `run_config.models` (or the table's chain): one route per
    deployment (a `pool:`
    entry gives one per member), each with its account's keys (from `env` or Secrets Manager, kept in
    `keyrings`), limiter and breaker. A pool member whose provider has no key is left out, with one
    warning; a pool left with none keeps its members (the first call then says which key is missing).
    `time_scale` is the run's `STEPGRAPH_TIME_SCALE`: it shrinks the wait past which the next entry
    serves, as the limiter's windows and days shrink."""
    chain = list(chain_of(run_config, role) or table.chain)
    allow_paid = bool(getattr(run_config, "allow_paid", True))
    keyrings = keyrings if keyrings is not None else {}
    routes = []
    for entry in chain:
        pool = entry if entry.startswith(POOL_PREFIX) else None
        members = []
        for dep in table.deployments(entry):
            spec = table.providers[dep.provider]
            if dep.provider not in keyrings:
                keyrings[dep.provider] = load_keys(
                    dep.provider, spec, secrets_client=secrets_client, env=env or {}
                )
            members.append(
                Route(
                    dep.provider,
                    dep.model,
                    spec.models[dep.model],
                    keyrings[dep.provider],
                    make_llm_factory(spec, dep.model, http_client=http_client),
                    limiter_factory(dep.provider, spec, dep.model) if limiter_factory else None,
                    pool=pool,
                    account=dep.account,
                    dialect=spec.header_dialect,
                    accounting=spec.token_accounting,
                    breaker=breaker_factory(dep.health_key) if breaker_factory else None,
                )
            )
        if pool is not None:
            keyed = [r for r in members if r.keys.current() is not None]
            for r in members:
                if r.keys.current() is None and r.provider not in _warned:
                    _warned.add(r.provider)
                    log.warning(
                        "%s has no API key (%s): left out of %s",
                        r.provider,
                        spec_source(table, r.provider),
                        entry,
                    )
            members = keyed or members
        routes.extend(members)
    router = ModelRouter(
        routes,
        budget_guard=budget_guard,
        callbacks=callbacks,
        clock=clock,
        remaining_s=remaining_s,
        run_state=run_state,
        allow_paid=allow_paid,
        metrics=metrics,
        fallback_after_s=FALLBACK_AFTER_S * time_scale,
        role=role,
    )
    return RoutedChatModel(router=router, role=role)


def chain_of(run_config: Any, role: str = "default") -> list[str] | None:
    """A role's chain from `run_config.models` (a list is the default role's chain), or None."""
    models = getattr(run_config, "models", None)
    if isinstance(models, dict):
        return models.get(role)
    return models if role == "default" else None
