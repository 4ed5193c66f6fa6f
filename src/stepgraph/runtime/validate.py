"""Validate an execution's input and choose the Map mode (inline, or Distributed from S3)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from stepgraph import resources
from stepgraph import s3 as s3util
from stepgraph.errors import ConfigError, InvalidInput, UnknownGraph
from stepgraph.limiter.profiles import load_profile
from stepgraph.providers.table import ProviderTable
from stepgraph.runtime import history
from stepgraph.schemas import (
    RETRIED_ITEM,
    RunConfig,
    check_item_sizes,
    check_items_key,
    parse_execution_input,
)


def validate_execution(
    event: dict[str, Any],
    *,
    bucket: str,
    s3: Any,
    table: ProviderTable,
    graphs: Mapping[str, str],
    map_concurrency: int,
    limits_overrides: str | None = None,
    roles: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """`event` is `{"input": <execution input>, "execution_id": ...}` (or the bare input).

    `table` and `graphs` are what model names and graph names are checked against; `map_concurrency`
    is the default for an input that sets no `config.max_concurrency`; `limits_overrides` (JSON, local
    runs) changes the primary provider's limits the history model plans with; `roles` are the model
    roles each graph declares (`stepgraph.graphs.registry.graph_roles`).
    """
    raw = event.get("input", event) if isinstance(event, dict) else event
    execution_id = event.get("execution_id") if isinstance(event, dict) else None
    if not isinstance(execution_id, str) or not execution_id or execution_id.endswith("None"):
        execution_id = (
            f"run-{uuid.uuid4().hex[:12]}"  # a stand-in that gives no context id still gets a unique one
        )
    parsed = parse_execution_input(raw)
    if parsed.graph not in graphs:
        raise UnknownGraph(
            f"input.graph: unknown graph {parsed.graph!r}", hint=f"registered: {', '.join(sorted(graphs))}"
        )
    check_run_config(
        parsed.config, table, where="input.config", roles=(roles or {}).get(parsed.graph), graph=parsed.graph
    )
    config = parsed.config.model_dump()
    config["max_concurrency"] = config["max_concurrency"] or map_concurrency
    if config["tolerated_failure_percentage"] is None:
        config["tolerated_failure_percentage"] = resources.DEFAULT_TOLERATED_FAILURE_PERCENTAGE
    # The callback task reads its TimeoutSecondsPath from here: it must be a number, never null.
    config["review_timeout_s"] = config["review_timeout_s"] or resources.DEFAULT_REVIEW_TIMEOUT_S
    out: dict[str, Any] = {"graph": parsed.graph, "config": config, "execution_id": execution_id}
    if parsed.items_s3 is not None:
        check_items_key(parsed.items_s3, where="input.items_s3")
        items = _read_items(s3, parsed.items_s3.bucket, parsed.items_s3.key)
        if not items:
            raise InvalidInput(
                f"input.items_s3: s3://{parsed.items_s3.bucket}/{parsed.items_s3.key} holds no items"
            )
        check_item_sizes(items, where=f"s3://{parsed.items_s3.bucket}/{parsed.items_s3.key} item")
        check_retry_items(
            items, parsed.config, where=f"s3://{parsed.items_s3.bucket}/{parsed.items_s3.key} item"
        )
        out.update(mode="distributed", items_s3=parsed.items_s3.model_dump(), item_count=len(items))
        return out
    items = parsed.items or []
    if not items:
        raise InvalidInput("input.items: the batch is empty", hint="give at least one item")
    check_item_sizes(items, where="input.items")
    check_retry_items(items, parsed.config, where="input.items")
    if not history.fits_inline(
        batch_shape(len(items), parsed.config, config["max_concurrency"], table, limits_overrides)
    ):
        key = f"{resources.PREFIX_ITEMS}{resources.execution_name(execution_id)}/items.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(items).encode(), ContentType="application/json")
        out.update(mode="distributed", items_s3={"bucket": bucket, "key": key}, item_count=len(items))
    else:
        out.update(mode="inline", items=items, item_count=len(items))
    return out


def batch_shape(
    items: int,
    config: RunConfig,
    concurrency: int,
    table: ProviderTable,
    limits_overrides: str | None = None,
) -> history.BatchShape:
    """What the history model needs: the items, the calls each makes and the primary provider's limits."""
    primary = table.members((config.chain() or table.chain)[0])[0][0]
    profile = config.limits_profile or table.providers[primary].limits_profile
    limits = load_profile(profile)
    if limits_overrides:  # local runs lower or raise the primary's limits
        overrides = json.loads(limits_overrides)
        known = {lim.name for lim in limits}
        limits = load_profile(profile, overrides={k: v for k, v in overrides.items() if k in known})
    calls = config.calls_per_item or history.DEFAULT_CALLS_PER_ITEM
    return history.BatchShape(items, calls, concurrency, tuple(limits))


def check_retry_items(items: list[Any], config: RunConfig, *, where: str) -> None:
    """A retry's items carry their original ids (`schemas.retry_envelope`); a plain item there would
    resume a thread nobody chose."""
    if config.retry_of is None:
        return
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and set(item) == {RETRIED_ITEM, "item"}):
            raise InvalidInput(
                f"{where}[{i}]: a retry's item must be {{{RETRIED_ITEM!r}: id, 'item': ...}}",
                hint="start retries with `stepgraph retry`; leave config.retry_of out of a new run",
            )


def check_run_config(
    config: RunConfig,
    table: ProviderTable,
    *,
    where: str,
    roles: Sequence[str] | None = None,
    graph: str = "",
) -> None:
    """Model names, roles and the limits profile, which the schema cannot check: the validate-input
    function rejects a bad run before any item starts, graph-step again for events that did not come
    through it. `roles`: the roles the graph declares (None: any)."""
    if isinstance(config.models, dict):
        unknown = sorted(set(config.models) - set(roles)) if roles is not None else []
        if unknown:
            raise InvalidInput(
                f"{where}.models: graph {graph} has no model role {unknown[0]!r}",
                hint=f"its roles: {', '.join(roles or ())} (STEPGRAPH_GRAPH_ROLES declares a graph's roles)",
            )
        chains = {f"{where}.models.{role}": chain for role, chain in config.models.items()}
    else:
        chains = {f"{where}.models": config.models or []}
    for path, chain in chains.items():
        for i, entry in enumerate(chain):
            try:
                table.members(entry)
            except ConfigError as exc:
                raise InvalidInput(f"{path}[{i}]: {exc.message}", hint=exc.hint) from None
    if config.limits_profile is not None:
        try:
            load_profile(config.limits_profile)
        except ConfigError as exc:
            raise InvalidInput(f"{where}.limits_profile: {exc.message}", hint=exc.hint) from None


def _read_items(s3: Any, bucket: str, key: str) -> list[Any]:
    from botocore.exceptions import ClientError

    try:
        with s3util.mapped(bucket, key):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, s3util.S3Failure) as exc:
        raise InvalidInput(
            f"input.items_s3: cannot read s3://{bucket}/{key} ({s3util.error_code(exc)})"
        ) from None
    try:
        items = json.loads(body)
    except json.JSONDecodeError:
        raise InvalidInput(
            f"input.items_s3: s3://{bucket}/{key} is not a JSON array",
            hint="`stepgraph start` converts JSONL for you",
        ) from None
    if not isinstance(items, list):
        raise InvalidInput(
            f"input.items_s3: s3://{bucket}/{key} holds a {type(items).__name__}, not a JSON array"
        )
    return items
