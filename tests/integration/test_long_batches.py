"""Batches that outlast a UTC day, time-scaled so a day lasts seconds, and the history-event model that
picks the inline Map checked against the events real local runs record."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from stepgraph.limiter import load_profile
from stepgraph.local.simulator import DEV_KEY
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.runtime import history
from stepgraph.usage import layout
from tests.fixtures.aws import execute

CALLS_PER_ITEM = 4  # the fanout graph: three analysts and a synthesis


def env_for(sim: Any, scale: float, limits: dict[str, dict[str, int]]) -> dict[str, str]:
    return {
        "STEPGRAPH_TIME_SCALE": str(scale),
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "STEPGRAPH_LIMIT_MARGIN": "0.05",
        "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
        "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
        "OPENROUTER_API_KEY": f"dev={DEV_KEY}",
        "OLLAMA_API_KEY": f"dev={DEV_KEY}",
        "STEPGRAPH_LIMITS_OVERRIDES": json.dumps(limits),
    }


def history_events(st: LocalStack, arn: str) -> int:
    sfn = st.client("stepfunctions")
    return sum(
        len(p["events"]) for p in sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    )


def shape(items: int, concurrency: int, limits: dict[str, dict[str, int]]) -> history.BatchShape:
    return history.BatchShape(
        items, CALLS_PER_ITEM, concurrency, tuple(load_profile("openrouter-free", overrides=limits))
    )


@pytest.fixture
def three_day_stack(make_simulator: Any) -> Iterator[tuple[LocalStack, Any, float]]:
    scale = 5e-5  # a UTC day lasts 4.32 s
    sim = make_simulator(rpm=20, rpd=4, time_scale=scale)
    with local_stack(env=env_for(sim, scale, {"rpd": {"capacity": 4}})) as st:
        yield st, sim, 86_400 * scale


def test_a_batch_whose_quota_needs_three_days_finishes_every_item_within_the_event_budget(
    three_day_stack: tuple[LocalStack, Any, float],
) -> None:
    st, sim, day_s = three_day_stack
    items = [{"text": f"Ticket {i}: the invoice is wrong."} for i in range(3)]  # 12 calls at 4 per day
    payload = {
        "graph": "fanout",
        "items": items,
        # The free model alone: with the default chain the paid variant would serve once the day is spent.
        "config": {
            "max_concurrency": 3,
            "calls_per_item": CALLS_PER_ITEM,
            "models": ["openrouter:openai/gpt-oss-120b:free"],
        },
    }
    desc = execute(st, payload, "three-days", timeout_s=300)
    assert desc["status"] == "SUCCEEDED", desc
    out = json.loads(desc["output"])
    assert out["mode"] == "inline"
    assert [i["status"] for i in out["items"]] == ["done"] * 3
    # The provider's daily cap held in every (scaled) UTC day, and the batch needed at least three of them.
    ok = [
        r
        for r in layout.s3_records(st.client("s3"), st.bucket, execution="three-days")
        if r["status"] == "ok"
    ]
    per_day = Counter(int(_epoch(r["ts"]) // day_s) for r in ok)
    assert len(ok) == 12 and max(per_day.values()) <= 4 and len(per_day) >= 3, per_day
    # The limiter waits for each new day; a call granted at the very end of a day may reach the provider in
    # the next one and be refused there once (then retried), at most once per day boundary.
    assert sim.stats()["rate_limited"] <= len(per_day)
    events = history_events(st, desc["executionArn"])
    estimate = history.estimated_events(shape(3, 3, {"rpd": {"capacity": 4}}))
    print(f"history events: three-day batch: {events} counted, {estimate} estimated")
    assert events <= estimate <= history.INLINE_BUDGET, (events, estimate)


@pytest.fixture
def slow_stack(make_simulator: Any) -> Iterator[tuple[LocalStack, Any]]:
    # One request per scaled minute (3 s): a slot is further away than a step may wait (1 s), so items
    # in flight really loop through the state machine's Wait.
    scale = 0.05
    sim = make_simulator(rpm=1, rpd=1000, time_scale=scale)
    with local_stack(env=env_for(sim, scale, {"rpm": {"capacity": 1}, "rpd": {"capacity": 1000}})) as st:
        yield st, sim


@pytest.mark.parametrize(("items", "concurrency"), [(1, 1), (3, 3)])
def test_the_history_model_never_under_estimates_a_local_run(
    slow_stack: tuple[LocalStack, Any], items: int, concurrency: int
) -> None:
    st, _ = slow_stack
    limits = {"rpm": {"capacity": 1}, "rpd": {"capacity": 1000}}
    payload = {
        "graph": "fanout",
        "items": [{"text": f"Ticket {i}"} for i in range(items)],
        "config": {"max_concurrency": concurrency, "calls_per_item": CALLS_PER_ITEM},
    }
    desc = execute(st, payload, f"budget-{items}-{concurrency}", timeout_s=300)
    assert desc["status"] == "SUCCEEDED", desc
    assert json.loads(desc["output"])["mode"] == "inline"
    events = history_events(st, desc["executionArn"])
    throttled = sum(1 for i in st.invocations if i.get("status") == "throttled")
    estimate = history.estimated_events(shape(items, concurrency, limits))
    print(
        f"history events: {items} items, concurrency {concurrency}: {events} counted, {estimate} estimated, {throttled} throttled loops"
    )
    assert events <= estimate, f"{events} events counted, {estimate} estimated ({throttled} throttled loops)"


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
