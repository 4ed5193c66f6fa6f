"""The simulator's limit, token and reply logic, with an injected clock (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepgraph.clock import FakeClock
from stepgraph.local.simulator.completions import reply_text, sse_events, usage_block
from stepgraph.local.simulator.limits import AccountLimits, next_utc_midnight
from stepgraph.local.simulator.models import MODELS, count_tokens


def test_sliding_window_refuses_then_frees_a_slot() -> None:
    clock = FakeClock()
    lim = AccountLimits(rpm=2, rpd=None, clock=clock)
    assert lim.admit().allowed
    clock.advance(10)
    assert lim.admit().allowed
    refused = lim.admit()
    assert not refused.allowed and refused.scope == "minute"
    assert refused.retry_after_s == pytest.approx(50)  # the first slot leaves the window at t=60
    assert refused.reset_ms == int((clock.now() + 50) * 1000)
    clock.advance(50)
    assert lim.admit().allowed


def test_time_scale_shrinks_the_window() -> None:
    clock = FakeClock()
    lim = AccountLimits(rpm=1, rpd=None, time_scale=0.05, clock=clock)
    assert lim.admit().allowed
    assert not lim.admit().allowed
    clock.advance(3.0)
    assert lim.admit().allowed


def test_daily_limit_resets_at_utc_midnight() -> None:
    clock = FakeClock(datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC).timestamp())
    lim = AccountLimits(rpm=None, rpd=2, clock=clock)
    assert lim.admit().allowed and lim.admit().allowed
    refused = lim.admit()
    assert not refused.allowed and refused.scope == "day"
    assert refused.reset_ms == int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)
    clock.advance(61)
    assert lim.admit().allowed


def test_concurrency_limit_and_release() -> None:
    lim = AccountLimits(rpm=None, rpd=None, max_concurrency=1, clock=FakeClock())
    assert lim.admit().allowed
    assert lim.admit().scope == "concurrency"
    lim.done()
    assert lim.admit().allowed
    assert lim.max_in_flight == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=80))
def test_admissions_never_exceed_rpm_in_any_window(gaps: list[float]) -> None:
    clock = FakeClock()
    lim = AccountLimits(rpm=5, rpd=None, clock=clock)
    for gap in gaps:
        clock.advance(gap)
        if lim.admit().allowed:
            lim.done()
    assert lim.max_in_window() <= 5


def test_next_utc_midnight() -> None:
    ts = datetime(2026, 5, 4, 12, 30, tzinfo=UTC).timestamp()
    assert next_utc_midnight(ts) == datetime(2026, 5, 5, tzinfo=UTC).timestamp()


def test_replies_are_deterministic_and_can_be_forced() -> None:
    msgs = [{"role": "user", "content": "Summarise the ticket about billing"}]
    assert reply_text(msgs, "m") == reply_text(msgs, "m")
    assert reply_text(msgs, "m") != reply_text(msgs, "other")
    assert "Summarise the ticket" in reply_text(msgs, "m")
    forced = [{"role": "user", "content": "Critique this.\nsim-reply: APPROVED"}]
    assert reply_text(forced, "m") == "APPROVED"


def test_usage_prices_paid_models_and_free_is_zero() -> None:
    free = usage_block(MODELS["openai/gpt-oss-120b:free"], 100, "a reply", 0)
    paid = usage_block(MODELS["openai/gpt-oss-120b"], 100, "a reply", 50)
    assert free["cost"] == 0
    expected = 100 * 0.10e-6 + paid["completion_tokens"] * 0.50e-6
    assert paid["cost"] == pytest.approx(expected)
    assert paid["total_tokens"] == 100 + paid["completion_tokens"]
    assert paid["prompt_tokens_details"]["cached_tokens"] == 50
    assert paid["completion_tokens_details"]["reasoning_tokens"] == count_tokens("a reply") // 4


def test_stream_ends_with_usage_or_error() -> None:
    usage = usage_block(MODELS["openai/gpt-oss-120b"], 10, "one two three four", 0)
    events = list(sse_events("gen-1", "m", "one two three four", usage))
    assert events[-1] == "data: [DONE]\n\n"
    assert '"usage"' in events[-2] and '"finish_reason": "stop"' in events[-3]
    failed = list(sse_events("gen-1", "m", "one two three four", usage, error=True))
    assert any('"finish_reason": "error"' in e for e in failed)
