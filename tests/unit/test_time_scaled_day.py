"""STEPGRAPH_TIME_SCALE compresses the UTC day as well as sliding windows: the simulator's day counter,
its reset headers and the limiter's `utc_day` windows roll over together, so a multi-day batch runs in
seconds locally. At scale 1 nothing changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepgraph.clock import FakeClock
from stepgraph.limiter import DynamoDBRateLimiter, MemoryStore, load_profile
from stepgraph.limiter.algorithm import seconds_to_next_utc_day
from stepgraph.local.simulator.limits import AccountLimits, next_utc_midnight
from stepgraph.providers import Throttled, build_chat_model
from stepgraph.providers.table import load_provider_table
from tests.fixtures.replay import Replay

SCALE = 1e-4  # a day of 8.64 s


def test_profiles_scale_the_day_and_keep_it_at_scale_one() -> None:
    (rpd,) = [lim for lim in load_profile("openrouter-free", time_scale=SCALE) if lim.name == "rpd"]
    assert rpd.kind == "utc_day" and rpd.per_seconds == pytest.approx(8.64)
    (real,) = [lim for lim in load_profile("openrouter-free") if lim.name == "rpd"]
    assert real.per_seconds == 86_400
    # The margin-widened sliding windows do not move the day: it must start when the provider's does.
    lims = {
        lim.name: lim for lim in load_profile("openrouter-free", time_scale=SCALE * 1.05, day_scale=SCALE)
    }
    assert lims["rpd"].per_seconds == pytest.approx(8.64) and lims["rpm"].per_seconds == pytest.approx(
        60 * SCALE * 1.05
    )


def test_the_limiter_refuses_until_the_scaled_day_ends_then_admits_again() -> None:
    clock = FakeClock(1_767_225_600.0 + 1.0)  # 1 s into a scaled day
    limits = load_profile("openrouter-free", time_scale=SCALE, overrides={"rpd": {"capacity": 2}})
    lim = DynamoDBRateLimiter("t", "acct", limits, clock=clock, store=MemoryStore(), max_wait_s=0.01)
    for _ in range(2):
        grant = lim.try_acquire()
        assert grant.granted
        clock.advance(grant.wait_s + 0.01)
    refused = lim.try_acquire()
    assert not refused.granted and refused.refused_by == "rpd"
    assert 0 < refused.wait_s <= 8.64
    clock.advance(refused.wait_s + 1e-6)
    assert lim.try_acquire().granted and lim.used_today("rpd") == 1


def test_the_simulator_day_counter_and_reset_header_follow_the_scale() -> None:
    clock = FakeClock(1_767_225_600.0 + 3.0)
    acct = AccountLimits(rpm=None, rpd=1, time_scale=SCALE, clock=clock)
    assert acct.admit().allowed
    refused = acct.admit()
    assert not refused.allowed and refused.scope == "day"
    assert refused.retry_after_s == pytest.approx(8.64 - 3.0)
    assert refused.reset_ms == pytest.approx((1_767_225_600.0 + 8.64) * 1000, abs=1)
    clock.advance(refused.retry_after_s + 1e-6)
    assert acct.admit().allowed


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1.7e9, max_value=1.9e9), st.sampled_from([1e-4, 1e-3, 0.05, 1.0]))
def test_the_simulator_and_the_limiter_agree_on_when_a_day_ends(now: float, scale: float) -> None:
    day_s = 86_400 * scale
    assert next_utc_midnight(now, day_s) == pytest.approx(now + seconds_to_next_utc_day(now, day_s), abs=1e-3)


def test_at_scale_one_the_day_is_the_utc_calendar_day() -> None:
    ts = datetime(2026, 5, 4, 12, 30, tzinfo=UTC).timestamp()
    assert next_utc_midnight(ts, 86_400) == datetime(2026, 5, 5, tzinfo=UTC).timestamp()
    assert seconds_to_next_utc_day(ts) == 11.5 * 3600


def _chain_near_midnight(scale: float, left_s: float) -> tuple[Any, Replay]:
    """The free variant then the paid one, the free day already spent, `left_s` before the day ends."""
    day_s = 86_400 * scale
    clock = FakeClock((1_767_225_600.0 // day_s + 1) * day_s - left_s)
    table = load_provider_table(
        json.dumps(
            {
                "providers": {
                    "openrouter": {
                        "base_url": "https://openrouter.example/api/v1",
                        "keys_env": "OPENROUTER_API_KEY",
                        "limits_profile": "openrouter-free",
                        "models": {
                            "openai/gpt-oss-120b:free": {"free": True},
                            "openai/gpt-oss-120b": {"usd_per_prompt_token": 1e-7},
                        },
                    }
                },
                "chain": ["openrouter:openai/gpt-oss-120b:free", "openrouter:openai/gpt-oss-120b"],
            }
        ),
        env={},
    )
    free_day = DynamoDBRateLimiter(
        "t",
        "openrouter:main",
        load_profile("openrouter-free", time_scale=scale, overrides={"rpd": {"capacity": 1}}),
        clock=clock,
        store=MemoryStore(),
        max_wait_s=1.0,
    )
    assert free_day.try_acquire().granted  # the day's one free request, spent earlier
    replay = Replay.of("openrouter/ok_paid")
    model = build_chat_model(
        table,
        limiter_factory=lambda provider, spec, name: free_day if name.endswith(":free") else None,
        clock=clock,
        remaining_s=lambda: 60.0,
        env={"OPENROUTER_API_KEY": "sk-or-test"},
        http_client=replay.client(),
        time_scale=scale,
    )
    return model, replay


@pytest.mark.parametrize("left_s", [200.0, 30.0])
def test_a_scaled_run_sends_the_spent_free_day_to_the_paid_variant_up_to_the_days_end(left_s: float) -> None:
    # At scale 0.05 a day lasts 72 min: with a real-seconds threshold (300 s) the last 5 min of every scaled
    # day (7% of it) would hold the item for the rest of the day instead of serving it from the paid variant.
    model, replay = _chain_near_midnight(0.05, left_s)
    assert model.invoke("hi").content == "A short summary."
    assert [b["model"] for b in replay.bodies()] == ["openai/gpt-oss-120b"]


def test_at_scale_one_a_free_day_ending_in_minutes_is_waited_for_not_paid() -> None:
    model, replay = _chain_near_midnight(1.0, 200.0)
    with pytest.raises(Throttled) as stop:
        model.invoke("hi")
    assert 0 < stop.value.retry_after_s <= 200.0 and replay.requests == []
