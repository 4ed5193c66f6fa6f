"""The multi-provider simulator's pure parts: token limits, what each dialect reports, outages, profiles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stepgraph.clock import FakeClock
from stepgraph.errors import ConfigError
from stepgraph.local.simulator.accounts import build_accounts
from stepgraph.local.simulator.dialects import canonical, duration, rate_headers
from stepgraph.local.simulator.limits import AccountLimits
from stepgraph.local.simulator.providers import PoolState, provider_options
from stepgraph.local.simulator.state import SimOptions, SimState
from stepgraph.providers.waits import parse_duration


def test_tokens_per_minute_refuse_until_the_window_frees_them() -> None:
    clock = FakeClock()
    lim = AccountLimits(rpm=None, rpd=None, tpm=100, clock=clock)
    assert lim.admit(60).allowed
    clock.advance(10)
    refused = lim.admit(60)
    assert not refused.allowed and refused.scope == "tokens_minute"
    assert refused.retry_after_s == pytest.approx(50)  # the first 60 tokens leave the window at t=60
    assert lim.admit(40).allowed  # what still fits is admitted
    clock.advance(50)
    assert lim.admit(60).allowed


def test_a_request_larger_than_the_minute_is_never_admitted() -> None:
    lim = AccountLimits(rpm=None, rpd=None, tpm=100, clock=FakeClock())
    assert lim.admit(101).scope == "too_large"


def test_settling_counts_what_was_used_not_the_estimate() -> None:
    lim = AccountLimits(rpm=None, rpd=None, tpm=100, tpd=1000, clock=FakeClock())
    grant = lim.admit(90)
    lim.settle(grant, 30)
    assert lim.admit(70).allowed  # 30 + 70 fits once the estimate is settled
    assert lim.day_tokens == 100 and lim.max_tokens_in_window() == 100


def test_tokens_per_day_refuse_until_the_next_utc_day() -> None:
    clock = FakeClock(0.0)
    lim = AccountLimits(rpm=None, rpd=None, tpd=100, time_scale=0.001, clock=clock)  # an 86.4-s day
    assert lim.admit(100).allowed
    refused = lim.admit(1)
    assert refused.scope == "tokens_day" and refused.retry_after_s == pytest.approx(86.4)
    clock.advance(86.4)
    assert lim.admit(1).allowed


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5, allow_nan=False), st.integers(1, 60)), min_size=1, max_size=80))
def test_admitted_tokens_never_exceed_tpm_in_any_window(calls: list[tuple[float, int]]) -> None:
    clock = FakeClock()
    lim = AccountLimits(rpm=None, rpd=None, tpm=100, clock=clock)
    for gap, tokens in calls:
        clock.advance(gap)
        if lim.admit(tokens).allowed:
            lim.done()
    assert lim.max_tokens_in_window() <= 100


def test_groq_reports_day_requests_and_minute_tokens_as_durations() -> None:
    clock = FakeClock(0.0)
    lim = AccountLimits(rpm=30, rpd=1000, tpm=8000, clock=clock)
    lim.admit(138)
    headers = rate_headers("groq", lim.snapshot())
    assert (
        headers["x-ratelimit-limit-requests"] == "1000" and headers["x-ratelimit-remaining-requests"] == "999"
    )
    assert headers["x-ratelimit-limit-tokens"] == "8000" and headers["x-ratelimit-remaining-tokens"] == "7862"
    assert parse_duration(headers["x-ratelimit-reset-tokens"]) == pytest.approx(
        60
    )  # the router reads these back
    assert parse_duration(headers["x-ratelimit-reset-requests"]) == pytest.approx(86_400)
    cerebras = rate_headers("cerebras", lim.snapshot())
    assert set(cerebras) == {
        f"x-ratelimit-{k}-{w}"
        for k in ("limit", "remaining", "reset")
        for w in ("requests-day", "tokens-minute")
    }
    assert float(cerebras["x-ratelimit-reset-tokens-minute"]) == pytest.approx(60)
    assert rate_headers("openrouter", lim.snapshot()) == {} == rate_headers("none", lim.snapshot())


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (6.6, "6.6s"), (86.4, "1m26.4s"), (3725, "1h2m5s")])
def test_durations_read_back(seconds: float, text: str) -> None:
    assert duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


def test_a_reported_limit_is_enforced_and_the_documented_one_kept() -> None:
    accounts = build_accounts(
        None,
        rpm=20,
        rpd=50,
        max_concurrency=None,
        credits_usd=None,
        time_scale=1.0,
        reported_limits={"rpm": 16},
    )
    account = accounts.accounts["default"]
    assert account.limits.rpm == 16 and account.limits.rpd == 50
    assert account.documented["rpm"] == 20
    with pytest.raises(ConfigError, match="reported_limits"):
        build_accounts(
            None,
            rpm=20,
            rpd=50,
            max_concurrency=None,
            credits_usd=None,
            time_scale=1.0,
            reported_limits={"rph": 1},
        )


def test_outages_start_and_end_on_the_clock() -> None:
    clock = FakeClock(100.0)
    state = SimState(SimOptions(down=[{"after_s": 5, "for_s": 10, "status": "connection"}]), clock=clock)
    assert state.outage_now() is None
    clock.advance(5)
    assert state.outage_now() is not None and state.outage_now().status == "connection"  # type: ignore[union-attr]
    clock.advance(10)
    assert state.outage_now() is None
    state.go_down({"for_s": 1, "status": 502})
    assert state.outage_now().status == 502  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", [{"for_s": 1, "status": 404}, {"after_s": 1}, {"for_s": 1, "when": 2}])
def test_bad_outages_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="outage"):
        SimOptions(down=[bad])


def test_profiles_fill_the_published_figures_and_entries_override_them() -> None:
    top = SimOptions(time_scale=0.05)
    groq = provider_options("groq", {"tpm": 4000}, top)
    assert (groq.header_dialect, groq.rpm, groq.rpd, groq.tpm, groq.tpd) == ("groq", 30, 1000, 4000, 200_000)
    assert groq.time_scale == 0.05 and groq.free_tier and not groq.reserve_completion
    cerebras = provider_options("c2", {"profile": "cerebras"}, top)
    assert cerebras.reserve_completion and cerebras.models == ["gpt-oss-120b"]
    plain = provider_options("local", {"rpm": 5}, top)
    assert plain.header_dialect == "openrouter" and plain.rpm == 5 and not plain.free_tier


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"groq": {"rpmm": 3}}, r"providers\.groq: unknown options \['rpmm'\]"),
        ({"x": {"profile": "azure"}}, r"providers\.x: unknown profile 'azure'"),
        ({"x": {"header_dialect": "klingon"}}, r"providers\.x: unknown header dialect 'klingon'"),
        ({"x": 3}, r"providers\.x: expected a mapping"),
        ({"a/b": {}}, r"one path segment"),
        ({}, r"at least one provider"),
    ],
)
def test_a_bad_provider_entry_is_named(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PoolState(SimOptions(providers=spec))  # type: ignore[arg-type]


def test_dialect_aliases() -> None:
    assert canonical("openai") == "groq"
    with pytest.raises(ValueError, match="unknown header dialect"):
        canonical("soap")
