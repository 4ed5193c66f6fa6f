"""Build the router: one route per model of the chain, each with its keys, limiter and client."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.providers.keys import KeyRing, load_keys
from stepgraph.providers.router import ModelRouter, Route, RunState
from stepgraph.providers.table import ProviderSpec, ProviderTable

ATTRIBUTION = {"HTTP-Referer": "https://github.com/stepgraph/stepgraph", "X-OpenRouter-Title": "stepgraph"}
# (provider, spec, model) -> the deployment's limiter, or None when it has no limits.
LimiterFactory = Callable[[str, ProviderSpec, str], Any]


def make_llm_factory(
    spec: ProviderSpec, model: str, *, timeout_s: float = 120.0, http_client: Any = None
) -> Callable[[str], Any]:
    """key -> a ChatOpenAI (that keeps `cost` and the generation id on streams), cached per key.
    `http_client` (an `httpx.Client`) replaces the default transport, e.g. a replay of recorded replies."""

    @lru_cache(maxsize=8)
    def build(key: str) -> Any:
        from stepgraph.providers.chat import UsageCapturingChatOpenAI

        return UsageCapturingChatOpenAI(
            model=model,
            base_url=spec.base_url,
            api_key=key,  # type: ignore[arg-type]
            max_retries=0,  # every HTTP attempt passes the limiter and is recorded
            streaming=spec.models[model].stream if model in spec.models else False,
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
) -> ModelRouter:
    """The router over `run_config.models` (or the table's chain): one route per model, each with its
    account's keys (from `env` or Secrets Manager, kept in `keyrings`) and limiter."""
    chain = list(getattr(run_config, "models", None) or table.chain)
    allow_paid = bool(getattr(run_config, "allow_paid", True))
    keyrings = keyrings if keyrings is not None else {}
    routes = []
    for entry in chain:
        provider, model = table.route(entry)
        spec = table.providers[provider]
        if provider not in keyrings:
            keyrings[provider] = load_keys(provider, spec, secrets_client=secrets_client, env=env or {})
        limiter = limiter_factory(provider, spec, model) if limiter_factory else None
        routes.append(
            Route(
                provider,
                model,
                spec.models[model],
                keyrings[provider],
                make_llm_factory(spec, model, http_client=http_client),
                limiter,
            )
        )
    return ModelRouter(
        routes,
        budget_guard=budget_guard,
        callbacks=callbacks,
        clock=clock,
        remaining_s=remaining_s,
        run_state=run_state,
        allow_paid=allow_paid,
        metrics=metrics,
    )
