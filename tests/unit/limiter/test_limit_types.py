"""What a limit counts is said, not guessed from its name; refusals and updates are typed values."""

from __future__ import annotations

import pytest

from stepgraph.clock import FakeClock
from stepgraph.errors import ConfigError
from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore, algorithm, load_profile
from stepgraph.limiter.algorithm import BusyOp, CountOp, IdleOp, LeaseOp, Refusal


def limiter(*limits: Limit) -> DynamoDBRateLimiter:
    return DynamoDBRateLimiter("t", "acct", list(limits), store=MemoryStore(), clock=FakeClock())


def test_the_unit_decides_what_a_plain_acquire_costs_not_the_name() -> None:
    # "tpm" counting requests and "budget" counting tokens: the old name-based guess got both wrong.
    grant = limiter(Limit("tpm", 10, 60), Limit("budget", 100, 60, unit="tokens")).try_acquire()
    assert grant.granted and grant.costs == {"tpm": 1, "budget": 0}


def test_the_design_constructor_still_works_and_a_bad_unit_is_one_line() -> None:
    assert Limit("rpd", 50, 86_400, kind="utc_day").unit == "requests"
    with pytest.raises(ConfigError, match="unit must be one of requests, tokens"):
        Limit("x", 1, 1, unit="bytes")  # type: ignore[arg-type]
    (tpm,) = [
        lim
        for lim in load_profile(
            "unlimited", overrides={"tpm": {"capacity": 8000, "per_seconds": 60, "unit": "tokens"}}
        )
    ]
    assert tpm.unit == "tokens"


def test_plan_returns_typed_updates_and_refusals() -> None:
    window = Limit("rpm", 2, 60)
    assert isinstance(algorithm.plan(window, "k", None, 1, 100.0, 5.0, "l"), IdleOp)
    assert isinstance(algorithm.plan(window, "k", {"tat": 130.0}, 1, 100.0, 5.0, "l"), BusyOp)
    never = algorithm.plan(window, "k", None, 3, 100.0, 5.0, "l")
    assert never == Refusal(float("inf"), "rpm")
    day = Limit("rpd", 5, 86_400, kind="utc_day")
    assert isinstance(algorithm.plan(day, "k", None, 1, 100.0, 5.0, "l"), CountOp)
    leases = Limit("conc", 1, 600, kind="concurrency")
    assert isinstance(algorithm.plan(leases, "k", None, 1, 100.0, 5.0, "l"), LeaseOp)
    full = algorithm.plan(leases, "k", {"leases": {"other": 130.0}}, 1, 100.0, 5.0, "l")
    assert full == Refusal(30.0, "conc")


def test_a_refused_update_explains_itself_as_a_refusal() -> None:
    window = Limit("rpm", 2, 60)
    op = BusyOp("k", 0, now=100.0, inc=30.0, horizon=5.0)
    assert algorithm.refusal(window, op, {"tat": 120.0}, 100.0) == Refusal(15.0, "rpm")
    assert algorithm.refusal(window, op, {"tat": 90.0}, 100.0) is None  # idle now: try again
