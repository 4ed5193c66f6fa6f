"""The forecast's arithmetic (pure: limits, day windows, prices in) and `stepgraph plan` without a sample."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stepgraph.cli import run
from stepgraph.errors import ConfigError
from stepgraph.limiter.limits import Limit
from stepgraph.local.sample import Sample, call_times, step_to_first_call
from stepgraph.planning.aws_cost import RunShape, estimate, load_prices
from stepgraph.planning.forecast import (
    DAY_JITTER_MEAN_S,
    WAIT_ROUNDING_S,
    Workload,
    capacity,
    chain_capacities,
    forecast,
    schedule,
)
from stepgraph.providers.table import load_provider_table

NOON = datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()
FREE_AND_PAID = ["openrouter:openai/gpt-oss-120b:free", "openrouter:openai/gpt-oss-120b"]


def work(items: int = 1000, **kw: Any) -> Workload:
    return Workload(
        items=items, calls_per_item=4, prompt_tokens_per_call=900, completion_tokens_per_call=300, **kw
    )


def test_a_thousand_items_on_openrouter_free_span_eighty_utc_days_or_one_with_the_paid_fallback() -> None:
    table = load_provider_table(None, env={})
    w = work(concurrency=20, item_s=12)
    free, paid = chain_capacities(table, FREE_AND_PAID, work=w)
    fc = forecast(w, free, paid, start=NOON)
    assert (fc.requests, fc.tokens) == (4000, 4_800_000)
    assert fc.free_only is not None and fc.with_paid is not None
    # 50 a day per account: the first day from noon, then 79 more UTC days, ending in February.
    assert len(fc.free_only.days) == 80
    assert fc.free_only.days[0] == "2026-12-01" and fc.free_only.days[-1] == "2027-02-18"
    assert fc.free_only.spend_usd == 0 and fc.free_only.free_requests == 4000
    # With the paid variant: 50 free, the rest paid at $0.10/M prompt and $0.50/M completion tokens.
    assert (fc.with_paid.free_requests, fc.with_paid.paid_requests) == (50, 3950)
    assert fc.with_paid.spend_usd == pytest.approx(3950 * (900 * 1e-7 + 300 * 5e-7))
    assert fc.with_paid.days == ["2026-12-01"] and fc.with_paid.wall_s < 3600


def test_the_sliding_window_sets_the_pace_after_its_burst() -> None:
    cap = capacity("p:m", [Limit("rpm", 20, 60)], free=True, tokens_per_call=1200, item_call_s=3)
    w = work(items=50, concurrency=40, item_s=12)
    s = schedule(w, [[cap]], [], start=NOON)
    # 200 requests: 20 at once, then one every 3 s; then the last call's own 3 s.
    assert s.wall_s == pytest.approx(180 * 3 + 3)
    assert s.days == ["2026-12-01"] and s.throttled_steps == pytest.approx(180)


def test_token_limits_count_the_tokens_of_each_call() -> None:
    groq_tokens = [
        Limit("tpm", 8000, 60, unit="tokens"),
        Limit("tpd", 200_000, 86_400, "utc_day", unit="tokens"),
    ]
    cap = capacity("groq:m", groq_tokens, free=True, tokens_per_call=1200, item_call_s=3)
    assert cap.rate_per_s == pytest.approx(8000 / 1200 / 60)
    assert cap.day_quota == pytest.approx(200_000 / 1200)
    # Each call reserves prompt + max_tokens (2,000) at admission: the window paces the others over the
    # rest, as the limiter does; the day's counter takes the calls' usage only.
    reserving = capacity(
        "groq:m", groq_tokens, free=True, tokens_per_call=1200, item_call_s=3, reserved_per_call=2000
    )
    assert reserving.rate_per_s == pytest.approx(6000 / 1200 / 60)
    assert reserving.day_quota == pytest.approx(200_000 / 1200)


def test_a_pool_serves_from_all_its_members_and_the_chain_moves_on_once_an_entry_is_spent() -> None:
    a = capacity("a:m", [Limit("rpd", 10, 86_400, "utc_day")], free=True, tokens_per_call=1, item_call_s=1)
    b = capacity("b:m", [Limit("rpd", 30, 86_400, "utc_day")], free=True, tokens_per_call=1, item_call_s=1)
    c = capacity("c:m", [Limit("rpd", 60, 86_400, "utc_day")], free=True, tokens_per_call=1, item_call_s=1)
    w = work(items=50, concurrency=50, item_s=1)  # 200 requests
    assert len(schedule(w, [[a, b]], [], start=NOON).days) == 5  # 40 a day
    assert len(schedule(w, [[a, b], [c]], [], start=NOON).days) == 2  # 100 a day: the pool, then c


def test_days_are_scaled_with_the_time_scale() -> None:
    scale = 4.0 / 86_400
    cap = capacity("p:m", [Limit("rpd", 4, 4.0, "utc_day")], free=True, tokens_per_call=1, item_call_s=0.1)
    w = work(items=3, concurrency=10, item_s=0.4)  # 12 requests at 4 a (4-second) day
    s = schedule(w, [[cap]], [], start=400.0, time_scale=scale)
    assert s.days == ["day 100", "day 101", "day 102"]
    assert 8.0 < s.wall_s < 10.0  # two day boundaries, the wake-ups and the last item's remaining calls


def test_a_day_s_wait_ends_at_the_next_midnight_plus_the_waking_step_s_start() -> None:
    scale = 8.0 / 86_400
    cap = capacity("p:m", [Limit("rpd", 4, 8.0, "utc_day")], free=True, tokens_per_call=1, item_call_s=0.1)
    # Two items one at a time, four calls each at four a (scaled, 8-second) day: one day's wait.
    w = work(items=2, concurrency=1, item_s=0.4, start_s=0.5, end_s=0.2, resume_s=1.5)
    s = schedule(w, [[cap]], [], start=800.0, time_scale=scale)
    assert s.days == ["day 100", "day 101"]
    # The next midnight (808), then the day jitter, the state machine's whole-second Wait (half a second
    # late on average) and the waking step's start to its first call; then the second item's calls, the end.
    wake = DAY_JITTER_MEAN_S * scale + WAIT_ROUNDING_S + 1.5
    assert s.wall_s == pytest.approx(8.0 + wake + 0.4 + 0.2, abs=1e-3)
    slower = schedule(replace(w, resume_s=2.5), [[cap]], [], start=800.0, time_scale=scale)
    assert slower.wall_s == pytest.approx(s.wall_s + 1.0, abs=1e-3)


def test_the_sample_times_calls_from_their_start_to_their_reply() -> None:
    def record(item: int, at: float, latency_s: float) -> dict[str, Any]:
        ts = datetime.fromtimestamp(NOON + at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"item_id": item, "ts": ts, "latency_ms": latency_s * 1000}

    # A usage record's `ts` is when the call was sent: item 0 sends at 1 s and 2 s (its last reply at 3 s),
    # item 1 once at 1.5 s for 0.2 s.
    item_s, first, span = call_times([record(0, 1.0, 0.5), record(0, 2.0, 1.0), record(1, 1.5, 0.2)])
    assert item_s == pytest.approx((2.0 + 0.2) / 2)
    assert first == pytest.approx(NOON + 1.0) and span == pytest.approx(2.0)
    assert call_times([]) == (0.0, 0.0, 0.0)


def test_a_waking_item_s_start_is_timed_from_the_step_state_that_made_the_first_call() -> None:
    at = lambda s: datetime.fromtimestamp(NOON + s, UTC)  # noqa: E731

    def entered(name: str, s: float) -> dict[str, Any]:
        return {"type": "TaskStateEntered", "timestamp": at(s), "stateEnteredEventDetails": {"name": name}}

    class History:  # get_execution_history's pages, as the paginator gives them
        def __init__(self, events: list[dict[str, Any]]) -> None:
            self.pages = [{"events": events[:2]}, {"events": events[2:]}]

        def get_paginator(self, operation: str) -> Any:
            assert operation == "get_execution_history"
            return self

        def paginate(self, **kw: Any) -> list[dict[str, Any]]:
            return self.pages

    # The run starts (Validate at 0.1 s), its first Step is throttled and waits a second; the Step after
    # the Wait, entered at 2.0 s, sends the first call at 2.4 s. The start to the first call (2.4 s) holds
    # the run's start-up and that wait; a throttled item's wake-up is the Step's 0.4 s.
    events = [
        entered("Validate", 0.1),
        entered("Step", 0.3),
        {"type": "WaitStateEntered", "timestamp": at(0.9)},
    ]
    events += [entered("Step", 2.0), entered("Step", 5.0)]
    assert step_to_first_call(History(events), "arn", NOON + 2.4) == pytest.approx(0.4)
    assert step_to_first_call(History(events[:1]), "arn", NOON + 2.4) is None
    figures = dict(
        items=1, wall_s=4.0, calls_per_item=4, prompt_tokens_per_call=9, completion_tokens_per_call=3
    )
    figures |= dict(item_s=1.0, calls_span_s=1.0, start_s=2.4, steps_per_item=1, step_s=1.0)
    figures |= dict(checkpoint_puts_per_item=4, usage_puts_per_step=1)
    assert Sample(**figures, step_to_call_s=0.4).resume_s == pytest.approx(0.4)
    assert Sample(**figures).resume_s == pytest.approx(2.4)  # no history: the start, as before


def test_the_aws_estimate_counts_the_run_and_names_its_price_table(tmp_path: Path) -> None:
    prices = load_prices()
    assert prices["as_of"] and prices["region"] == "us-east-1" and prices["source"]
    one = estimate(RunShape(items=100, requests=400), prices)
    two = estimate(RunShape(items=200, requests=800), prices)
    assert one["counts"]["state_transitions"] == 4 + 2 * 100 + 100
    assert one["counts"]["lambda_requests"] == 101
    assert two["total_usd"] == pytest.approx(2 * one["total_usd"], rel=0.01)
    assert set(one["usd"]) == {"step_functions", "lambda", "dynamodb", "s3", "cloudwatch_logs"}
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps({**prices, "lambda": {"usd_per_request": 1}}))
    with pytest.raises(ConfigError, match="lambda.usd_per_gb_second_x86_64 is missing"):
        load_prices(bad)


def test_plan_without_a_sample_prints_json_and_a_table(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(f'{{"text": "ticket {i}"}}\n' for i in range(100)))
    config = json.dumps({"models": FREE_AND_PAID, "max_concurrency": 20})
    args = [
        "plan",
        "--items",
        str(items),
        "--calls-per-item",
        "4",
        "--tokens-per-call",
        "1200",
        "--config",
        config,
    ]
    assert run([*args, "--format", "json"]) == 0
    report = json.loads(capfd.readouterr().out)
    assert report["requests"] == 400 and report["workload"]["prompt_tokens_per_call"] == 900
    assert len(report["free_only"]["days"]) == 8 and report["with_paid"]["paid_requests"] == 350
    assert report["aws"]["free_only"]["total_usd"] > 0 and report["prices"]["as_of"]
    assert run(args) == 0
    out = capfd.readouterr().out
    assert "free models only" in out and "with paid fallback" in out and "AWS" in out


def test_plan_reads_s3_items_through_boto3(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    import boto3
    from botocore.response import StreamingBody
    from botocore.stub import Stubber

    import stepgraph.clients as clients

    s3 = boto3.client("s3", region_name="eu-west-1")
    stub = Stubber(s3)
    body = json.dumps([{"text": "a"}, {"text": "b"}]).encode()
    stub.add_response(
        "get_object",
        {"Body": StreamingBody(io.BytesIO(body), len(body))},
        {"Bucket": "data-b", "Key": "items/x.json"},
    )
    monkeypatch.setattr(clients, "client", lambda service, *_: s3)
    with stub:
        code = run(
            [
                "plan",
                "--items",
                "s3://data-b/items/x.json",
                "--calls-per-item",
                "2",
                "--tokens-per-call",
                "100+50",
                "--format",
                "json",
            ]
        )
    assert code == 0
    assert json.loads(capfd.readouterr().out)["requests"] == 4


def live_table(used_rpd: int, rpm: int | None = None) -> tuple[Any, str]:
    """A limiter table (in memory) where today's openrouter free counter holds `used_rpd` and the
    provider's answers lowered rpm to `rpm`; with the account's limiter key."""
    from stepgraph.clock import FakeClock
    from stepgraph.limiter.learned import LearnedLimits
    from stepgraph.limiter.store import MemoryStore
    from stepgraph.planning.live import LiveLimits

    table = load_provider_table(None, env={})
    key = table.deployment("openrouter", "openai/gpt-oss-120b:free").limiter_key
    store, clock = MemoryStore(), FakeClock(NOON)
    store.items[f"{key}#rpd#2026-12-01"] = {"count": used_rpd}
    if rpm is not None:
        LearnedLimits(lambda: store, key, clock).lower("rpm", rpm, ceiling=20, reason="a 429 said so")
    return LiveLimits(store, clock), key


def test_live_limits_leave_the_first_day_what_today_has_not_spent_and_apply_learned_lowerings() -> None:
    table = load_provider_table(None, env={})
    w = work(items=25)  # 100 requests; 50 a day on the free account
    free, _ = chain_capacities(table, FREE_AND_PAID[:1], work=w)
    assert len(forecast(w, free, [], start=NOON).free_only.days) == 2  # type: ignore[union-attr]
    live, key = live_table(used_rpd=30, rpm=5)
    free, _ = chain_capacities(table, FREE_AND_PAID[:1], work=w, live=live)
    (cap,) = free[0]
    assert cap.spent_today == 30 and cap.learned == {"rpm": 5}
    assert cap.rate_per_s == pytest.approx(5 / 60)
    fc = forecast(w, free, [], start=NOON)
    # 20 left today, 50 tomorrow, 30 the day after.
    assert fc.free_only is not None and fc.free_only.days == ["2026-12-01", "2026-12-02", "2026-12-03"]
    assert fc.deployments[0]["spent_today"] == 30 and fc.deployments[0]["learned"] == {"rpm": 5}


def test_live_limits_count_only_for_a_batch_that_starts_today() -> None:
    from stepgraph.cli.plan import build_report
    from stepgraph.schemas import RunConfig

    table = load_provider_table(None, env={})
    config = RunConfig(models=FREE_AND_PAID[:1])
    live, _ = live_table(used_rpd=50)
    args = (25, config, table, load_prices())
    kw: dict[str, Any] = {"calls": 4, "tokens": (900.0, 300.0), "live": live}
    today = build_report(*args, **kw)
    # Today's 50 are spent: the batch starts tomorrow.
    assert today["live"] is True and len(today["free_only"]["days"]) == 3
    noon_in_two_days = (datetime.now(UTC).timestamp() // 86_400 + 2) * 86_400 + 43_200
    later = build_report(*args, **kw, start=noon_in_two_days)
    assert later["live"] is False and len(later["free_only"]["days"]) == 2
