"""One graph-step invocation from the function's dependencies: saver, limiters, budget, ledger, model, graph."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from stepgraph import resources
from stepgraph import s3 as s3util
from stepgraph.checkpoint import S3Saver
from stepgraph.errors import InvalidInput, UnknownGraph
from stepgraph.graphs import StepContext, load_graph
from stepgraph.graphs.registry import graph_config_schema
from stepgraph.progress import RunCounters
from stepgraph.providers import RunState, build_chat_model
from stepgraph.providers.table import ProviderTable
from stepgraph.review.store import ReviewStore
from stepgraph.runtime.deps import Dependencies
from stepgraph.runtime.results import ResultStore
from stepgraph.runtime.step import run_step
from stepgraph.runtime.validate import check_run_config
from stepgraph.schemas import StepEvent, StepResult
from stepgraph.usage.callback import UsageCallbackHandler


def check_event(
    event: StepEvent,
    table: ProviderTable,
    graphs: Mapping[str, str],
    roles: Mapping[str, tuple[str, ...]] | None = None,
) -> None:
    """Reject what the schema cannot see (graph names, model names and roles, profiles) before any work starts."""
    if event.graph not in graphs:
        raise UnknownGraph(
            f"event.graph: unknown graph {event.graph!r}", hint=f"registered: {', '.join(sorted(graphs))}"
        )
    check_run_config(
        event.config, table, where="event.config", roles=(roles or {}).get(event.graph), graph=event.graph
    )


def check_graph_config(values: dict[str, Any] | None, schema: Any) -> dict[str, Any]:
    """`config.graph_config`, checked against the graph's `CONFIG_SCHEMA` (a pydantic model or TypedDict)
    when it declares one; what reaches the graph's `configurable` is the user's values as given."""
    values = dict(values or {})
    if schema is None:
        return values
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(schema).validate_python(values)
    except ValidationError as exc:
        where = "; ".join(
            f"event.config.graph_config.{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise InvalidInput(
            where, hint=f"the graph's settings are {getattr(schema, '__name__', schema)}"
        ) from None
    return values


def _item(event: StepEvent, s3: Any) -> Any:
    ref = event.item_ref
    if ref is None:
        return event.item
    where = f"event.item_ref: s3://{ref.bucket}/{ref.key}"
    try:
        # Any other S3 error is transient and propagates: the state machine retries the step.
        with s3util.mapped(ref.bucket, ref.key):
            body = s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
    except (s3util.NoSuchObject, s3util.S3Unusable) as exc:
        raise InvalidInput(
            f"{where} cannot be read ({exc.code})", hint="point item_ref at an existing object"
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
    deps: Dependencies,
    remaining_ms: Callable[[], int],
    request_id: str,
) -> StepResult:
    """Run one item's graph from its checkpoint until it ends, is throttled or the time runs low.

    Args:
        event: the step event (`parse_step_event` validates the raw one).
        deps: the function's dependencies (`build_dependencies`, kept per warm container).
        remaining_ms: the Lambda context's `get_remaining_time_in_millis`.
        request_id: the invocation's id; it names the usage objects this step writes.

    Returns:
        A small `StepResult`: `done` (the final state is in S3 at `result_ref`), `running` (call again)
        or `throttled` (wait `retry_after_s`, then call again), `interrupted` (the item waits for a
        person: its pending interrupts are at `review_ref`).

    Example:
        >>> deps = build_dependencies(settings_from(os.environ), os.environ)
        >>> run_graph_step(parse_step_event(event), deps=deps, remaining_ms=ctx.get_remaining_time_in_millis,
        ...                request_id=ctx.aws_request_id).status
        'done'
    """
    settings = deps.settings
    s3 = deps.s3
    if event.park is not None:
        return park_for_review(event, ReviewStore(settings.bucket, s3))
    table = deps.table
    check_event(event, table, deps.graphs, deps.graph_roles)
    builder = load_graph(event.graph, deps.graphs)
    graph_config = check_graph_config(
        event.config.graph_config, graph_config_schema(event.graph, deps.graphs)
    )
    item = _item(event, s3)  # a bad item_ref fails before any model call or usage object
    metrics = deps.metrics(event.graph)

    def remaining_s() -> float:
        return remaining_ms() / 1000.0

    counters = RunCounters(settings.limiter_table, event.execution_id, client=deps.dynamodb)
    with deps.ledger(event.execution_id, request_id, listeners=[metrics, counters]) as ledger:
        budget_guard = deps.run_guard(
            event.execution_id,
            event.item_id,
            budget_usd=event.config.budget_usd,
            max_calls_per_item=event.config.max_calls_per_item,
        )
        run_state = RunState()

        def model(role: str) -> Any:
            chain = event.config.chain(role) or table.chain
            return build_chat_model(
                table,
                event.config,
                limiter_factory=deps.limiter_factory(
                    event.config.limits_profile, table.members(chain[0])[0][0]
                ),
                breaker_factory=deps.breaker_factory(),
                budget_guard=budget_guard,
                callbacks=[UsageCallbackHandler(ledger, pricing=table.price)],
                remaining_s=lambda: remaining_s() - settings.step_margin_s,
                run_state=run_state,
                keyrings=deps.keyrings,
                secrets_client=deps.secrets,
                env=deps.env,
                metrics=metrics,
                time_scale=settings.time_scale,
                role=role,
            )

        models = {role: model(role) for role in event.config.roles()}
        graph = builder.compile(checkpointer=S3Saver(settings.bucket, client=s3))
        context = StepContext(
            model=models["default"],
            item_id=event.item_id,
            models=models,
            roles=deps.graph_roles.get(event.graph),
        )
        if event.config.max_rounds and isinstance(item, dict):
            item = {"max_rounds": event.config.max_rounds, **item}
        return run_step(
            event,
            graph=graph,
            context=context,
            item=item,
            results=ResultStore(settings.bucket, s3, on_created=counters.item_done),
            remaining_s=remaining_s,
            margin_s=settings.step_margin_s,
            time_scale=settings.time_scale,
            reviews=ReviewStore(settings.bucket, s3),
            graph_config=graph_config,
        )


def park_for_review(event: StepEvent, reviews: ReviewStore) -> StepResult:
    """The callback task's call: record its token with the pending interrupts and return at once. The
    state machine then waits, at no cost and with no Lambda running, until the token is answered."""
    assert event.park is not None
    timeout_s = event.config.review_timeout_s or resources.DEFAULT_REVIEW_TIMEOUT_S
    entered = None
    if event.park.entered_at:
        entered = datetime.fromisoformat(event.park.entered_at.replace("Z", "+00:00"))
        entered = entered if entered.tzinfo else entered.replace(tzinfo=UTC)
    reviews.park(event.park.review_ref.key, event.park.task_token, timeout_s, now=entered)
    return StepResult(status="interrupted", review_ref=event.park.review_ref)
