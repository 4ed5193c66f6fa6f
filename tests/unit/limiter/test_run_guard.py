"""Per-run guards: `config.budget_usd` (one execution's paid spend) and `config.max_calls_per_item`."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepgraph.clock import FakeClock
from stepgraph.errors import InvalidInput
from stepgraph.limiter import BudgetExceeded, BudgetGuard, MemoryStore
from stepgraph.limiter.run_guard import MaxCallsExceeded, RunGuard
from stepgraph.schemas import parse_execution_input
from tests.unit.providers.test_router import Script, route, router

RUN = "arn:aws:states:us-east-1:123456789012:execution:sm:run-1"


def guard(store: MemoryStore, **kw: Any) -> RunGuard:
    return RunGuard("t", RUN, kw.pop("item", "0"), store=store, clock=FakeClock(), **kw)


@settings(max_examples=25, deadline=None)
@given(
    estimates=st.lists(st.floats(min_value=0.0001, max_value=0.01), min_size=1, max_size=24),
    actual_share=st.floats(min_value=0.0, max_value=1.0),
    cap=st.floats(min_value=0.001, max_value=0.05),
)
def test_parallel_items_never_book_more_than_the_run_budget(
    estimates: list[float], actual_share: float, cap: float
) -> None:
    store = MemoryStore()
    booked: list[float] = []
    lock = threading.Lock()

    def item(i: int, estimate: float) -> None:
        g = guard(store, item=str(i), budget_usd=cap)
        try:
            r = g.reserve(estimate)
        except BudgetExceeded:
            return
        g.reconcile(r, estimate * actual_share)  # a reply never costs more than its estimate
        with lock:
            booked.append(estimate * actual_share)

    threads = [threading.Thread(target=item, args=(i, e)) for i, e in enumerate(estimates)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = guard(store, budget_usd=cap).spent_usd()
    assert spent <= cap + 1e-6
    assert spent == pytest.approx(sum(booked), abs=1e-6 * len(estimates))  # micro-dollars, rounded up


def test_a_run_refusal_gives_the_stack_reservation_back() -> None:
    store = MemoryStore()
    stack = BudgetGuard("t", "spend", daily_cap_usd=1.0, store=store, clock=FakeClock())
    g = guard(store, stack=stack, budget_usd=0.001)
    with pytest.raises(BudgetExceeded, match="run budget of \\$0.0010") as info:
        g.reserve(0.002)
    assert "config.budget_usd" in str(info.value)
    assert stack.spent_today_usd() == 0 and g.spent_usd() == 0
    r = g.reserve(0.0005)
    g.reconcile(r, 0.0002)
    assert stack.spent_today_usd() == pytest.approx(0.0002) and g.spent_usd() == pytest.approx(0.0002)


def test_the_stack_cap_still_applies_under_a_run_budget() -> None:
    store = MemoryStore()
    stack = BudgetGuard("t", "spend", daily_cap_usd=0.001, store=store, clock=FakeClock())
    with pytest.raises(BudgetExceeded, match="daily budget"):
        guard(store, stack=stack, budget_usd=5.0).reserve(0.002)
    assert guard(store, budget_usd=5.0).spent_usd() == 0


def test_runs_have_their_own_budgets() -> None:
    store = MemoryStore()
    RunGuard("t", RUN, "0", store=store, budget_usd=0.001).reserve(0.001)
    other = RunGuard("t", RUN + "-2", "0", store=store, budget_usd=0.001)
    other.reserve(0.001)  # the first run's spend is not this one's
    with pytest.raises(BudgetExceeded):
        other.reserve(0.0001)


def test_a_runaway_loop_stops_at_max_calls_per_item_with_a_typed_error() -> None:
    store = MemoryStore()
    s = Script(*["again"] * 10)
    model = router(route(s), budget_guard=guard(store, item="7", max_calls_per_item=3))
    for _ in range(3):
        model.invoke("x")
    with pytest.raises(MaxCallsExceeded, match="item 7 reached config.max_calls_per_item=3"):
        model.invoke("x")
    assert len(s.calls) == 3
    # Another item of the run, and the same item in another step (a fresh guard), share the table's count.
    guard(store, item="8", max_calls_per_item=3).on_attempt()
    with pytest.raises(MaxCallsExceeded):
        guard(store, item="7", max_calls_per_item=3).on_attempt()


def test_a_paid_call_over_the_run_budget_is_never_sent() -> None:
    s = Script("x")
    g = guard(MemoryStore(), budget_usd=0.0001)
    with pytest.raises(BudgetExceeded, match="run budget"):
        router(route(s, free=False, context=10**6), budget_guard=g).invoke("x" * 4000)
    assert s.calls == []


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"budget_usd": 0}, "config.budget_usd"),
        ({"budget_usd": -1}, "config.budget_usd"),
        ({"budget_usd": "lots"}, "config.budget_usd"),
        ({"max_calls_per_item": 0}, "config.max_calls_per_item"),
        ({"max_calls_per_item": 1.5}, "config.max_calls_per_item"),
        ({"retry_of": "run-1"}, "config.retry_of"),
    ],
)
def test_run_guards_are_validated_at_input(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput, match=f"input.{field}"):
        parse_execution_input({"graph": "g", "items": [1], "config": config})
    ok = parse_execution_input(
        {"graph": "g", "items": [1], "config": {"budget_usd": 2.5, "max_calls_per_item": 40}}
    )
    assert ok.config.budget_usd == 2.5 and ok.config.max_calls_per_item == 40
