"""Wire one graph-step invocation from the settings: saver, limiters, budget, ledger, model, graph."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from stepgraph import resources
from stepgraph.checkpoint import S3Saver
from stepgraph.config import Settings, get_settings
from stepgraph.errors import InvalidInput, UnknownGraph
from stepgraph.graphs import StepContext, load_graph
from stepgraph.graphs.registry import registered
from stepgraph.limiter import BudgetGuard, DynamoDBRateLimiter, load_profile
from stepgraph.providers import RunState, build_chat_model, load_provider_table
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.metrics import MetricsEmitter
from stepgraph.providers.table import ProviderSpec, ProviderTable
from stepgraph.runtime import clients
from stepgraph.runtime.results import ResultStore
from stepgraph.runtime.step import run_step
from stepgraph.runtime.validate import check_run_config
from stepgraph.schemas import StepEvent, StepResult
from stepgraph.usage.callback import UsageCallbackHandler
from stepgraph.usage.ledger import UsageLedger

# Kept across invocations of a warm container: limiter caches stay warm, retired keys stay retired.
_limiters: dict[tuple[str, str, str, float], DynamoDBRateLimiter] = {}
_keyrings: dict[str, KeyRing] = {}
# How long a step may sleep for a limiter slot before it hands the wait to the state machine: long
# enough that a fan-out of a few branches fits into one step at 20 rpm (one slot every 3 s).
MAX_WAIT_S = 10.0
MIN_STATE_MACHINE_WAIT_S = 1.0


def _table(providers: str | None) -> ProviderTable:
    # Not cached: base URLs and keys come from the environment, which tests and local stacks change.
    return load_provider_table(providers)


def limiter_factory(
    settings: Settings, profile_override: str | None, primary: str
) -> Callable[[str, ProviderSpec], Any]:
    def make(provider: str, spec: ProviderSpec) -> DynamoDBRateLimiter | None:
        profile = profile_override if (profile_override and provider == primary) else spec.limits_profile
        overrides = (
            json.loads(settings.limits_overrides)
            if settings.limits_overrides and provider == primary
            else None
        )
        if overrides:
            known = {lim.name for lim in load_profile(profile)}
            overrides = {k: v for k, v in overrides.items() if k in known}
        limits = load_profile(
            profile,
            time_scale=settings.time_scale * (1 + settings.limit_margin),
            day_scale=settings.time_scale,  # days start when the provider's do: no margin
            overrides=overrides,
        )
        if not limits:
            return None
        key = (settings.limiter_table, f"{provider}:{spec.account}", profile, settings.time_scale)
        if key not in _limiters:
            _limiters[key] = DynamoDBRateLimiter(
                settings.limiter_table,
                key[1],
                limits,
                client=clients.client("dynamodb", settings.dynamodb_endpoint_url or settings.endpoint_url),
                # Never hand the state machine a wait shorter than its Wait can take (whole seconds).
                max_wait_s=max(MAX_WAIT_S * settings.time_scale, MIN_STATE_MACHINE_WAIT_S),
                max_skew_s=settings.clock_skew_s * settings.time_scale,
            )
        return _limiters[key]

    return make


def _pricing(table: ProviderTable) -> Callable[[str, int, int], float | None]:
    def price(model: str, prompt: int, completion: int) -> float | None:
        for spec in table.providers.values():
            if model in spec.models:
                m = spec.models[model]
                return prompt * m.usd_per_prompt_token + completion * m.usd_per_completion_token
        return None

    return price


def check_event(event: StepEvent, table: ProviderTable) -> None:
    """Reject what the schema cannot see (graph names, model names, profiles) before any work starts."""
    graphs = registered()
    if event.graph not in graphs:
        raise UnknownGraph(
            f"event.graph: unknown graph {event.graph!r}", hint=f"registered: {', '.join(sorted(graphs))}"
        )
    check_run_config(event.config, table, where="event.config")


def _item(event: StepEvent, s3: Any) -> Any:
    from botocore.exceptions import ClientError

    ref = event.item_ref
    if ref is None:
        return event.item
    where = f"event.item_ref: s3://{ref.bucket}/{ref.key}"
    try:
        body = s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("NoSuchKey", "NoSuchBucket", "404", "AccessDenied", "403"):
            raise  # transient: the state machine retries the step
        raise InvalidInput(
            f"{where} cannot be read ({code})", hint="point item_ref at an existing object"
        ) from None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"{where} is not JSON ({exc})", hint="an item object holds one JSON value"
        ) from None


def run_graph_step(
    event: StepEvent,
    *,
    remaining_ms: Callable[[], int],
    request_id: str,
    settings: Settings | None = None,
) -> StepResult:
    settings = settings or get_settings()
    s3 = clients.client("s3", settings.endpoint_url)
    table = _table(settings.providers)
    check_event(event, table)
    builder = load_graph(event.graph)
    item = _item(event, s3)  # a bad item_ref fails before any model call or usage object
    chain = event.config.models or table.chain
    primary = table.route(chain[0])[0]
    metrics = MetricsEmitter(graph=event.graph)

    def remaining_s() -> float:
        return remaining_ms() / 1000.0

    budget = None
    if settings.daily_budget_usd is not None or settings.total_budget_usd is not None:
        budget = BudgetGuard(
            settings.limiter_table,
            resources.BUDGET_KEY,
            daily_cap_usd=settings.daily_budget_usd,
            total_cap_usd=settings.total_budget_usd,
            client=clients.client("dynamodb", settings.dynamodb_endpoint_url or settings.endpoint_url),
        )
    with UsageLedger(
        settings.bucket,
        execution_id=event.execution_id,
        invocation_id=request_id,
        client=s3,
        gzip=settings.usage_gzip,
        listeners=[metrics],
        flush_every=settings.usage_flush_every,
    ) as ledger:
        model = build_chat_model(
            table,
            event.config,
            limiter_factory=limiter_factory(settings, event.config.limits_profile, primary),
            budget_guard=budget,
            callbacks=[UsageCallbackHandler(ledger, pricing=_pricing(table))],
            remaining_s=lambda: remaining_s() - settings.step_margin_s,
            run_state=RunState(),
            keyrings=_keyrings,
            secrets_client=clients.client("secretsmanager", settings.endpoint_url),
            metrics=metrics,
        )
        graph = builder.compile(checkpointer=S3Saver(settings.bucket, client=s3))
        context = StepContext(model=model, item_id=event.item_id)
        if event.config.max_rounds and isinstance(item, dict):
            item = {"max_rounds": event.config.max_rounds, **item}
        result = run_step(
            event,
            graph=graph,
            context=context,
            item=item,
            results=ResultStore(settings.bucket, s3),
            remaining_s=remaining_s,
            margin_s=settings.step_margin_s,
            time_scale=settings.time_scale,
        )
        return result
