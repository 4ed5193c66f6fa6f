"""Limiter logic on the in-memory store with an injected clock: no sockets, no sleeping."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stepgraph.clock import FakeClock
from stepgraph.errors import ConfigError
from stepgraph.limiter import (
    DynamoDBRateLimiter,
    Limit,
    LimiterUnavailable,
    MemoryStore,
    RateLimited,
    load_profile,
)
from tests.fixtures.windows import max_in_window


def make(limits: list[Limit], *, clock: FakeClock | None = None, store: MemoryStore | None = None, **kw):
    clock = clock or FakeClock()
    store = store or MemoryStore()
    return DynamoDBRateLimiter("t", "acct", limits, clock=clock, store=store, **kw), clock, store


def test_requests_are_paced_by_the_emission_interval() -> None:
    lim, clock, _ = make([Limit("rpm", 20, 60)], max_wait_s=10)
    waits = [lim.try_acquire().wait_s for _ in range(4)]
    assert waits == pytest.approx([0, 3, 6, 9])
    refused = lim.try_acquire()
    assert not refused.granted and refused.refused_by == "rpm"
    assert refused.wait_s == pytest.approx(2.0)  # slot at 12 s, horizon 10 s
    clock.advance(refused.wait_s)
    assert lim.try_acquire().granted


def test_non_blocking_acquire_and_rate_limited() -> None:
    lim, clock, _ = make([Limit("rpm", 2, 60)], max_wait_s=0)
    assert lim.acquire(blocking=False) is True
    assert lim.acquire(blocking=False) is False
    with pytest.raises(RateLimited) as info:
        lim.acquire(blocking=True)
    assert info.value.retry_after_s == pytest.approx(30)


def test_blocking_acquire_sleeps_on_the_injected_clock() -> None:
    lim, clock, _ = make([Limit("rpm", 2, 60)], max_wait_s=40)
    start = clock.now()
    assert lim.acquire() and lim.acquire()
    assert clock.now() - start == pytest.approx(30)


def test_daily_limit_counts_per_utc_day() -> None:
    clock = FakeClock(datetime(2026, 6, 1, 23, 59, tzinfo=UTC).timestamp())
    lim, _, _ = make([Limit("rpd", 2, 86_400, "utc_day")], clock=clock)
    assert lim.try_acquire().granted and lim.try_acquire().granted
    refused = lim.try_acquire()
    assert not refused.granted and refused.wait_s == pytest.approx(60)
    assert lim.used_today("rpd") == 2
    clock.advance(60)
    assert lim.try_acquire().granted and lim.used_today("rpd") == 1


def test_a_slot_past_midnight_is_counted_on_the_day_it_is_sent() -> None:
    # The provider counts a send on the day it arrives; a slot reserved ahead across midnight was counted
    # on the day before, so the new day took one more than its quota (a 429 at the day's last request).
    clock = FakeClock(datetime(2026, 6, 1, 23, 59, 58, tzinfo=UTC).timestamp())
    lim, _, _ = make([Limit("rpm", 20, 60), Limit("rpd", 100, 86_400, "utc_day")], clock=clock, max_wait_s=10)
    assert lim.try_acquire().granted  # now; the next slot is 3 s away, in June 2nd
    crossing = lim.try_acquire()
    assert not crossing.granted and crossing.refused_by == "rpd" and crossing.wait_s == pytest.approx(2)
    assert lim.used_today("rpd") == 1  # nothing kept of the refused request
    clock.advance(crossing.wait_s)
    again = lim.try_acquire()
    assert again.granted and again.wait_s == pytest.approx(1) and lim.used_today("rpd") == 1  # June 2nd's


def test_refused_dimension_takes_nothing_from_the_others() -> None:
    lim, _, store = make([Limit("rpm", 100, 60), Limit("rpd", 1, 86_400, "utc_day")], max_wait_s=100)
    assert lim.try_acquire().granted
    tat_after_first = store.get("acct#rpm")
    for _ in range(5):
        assert not lim.try_acquire().granted
    assert store.get("acct#rpm") == tat_after_first


def test_token_estimates_reconcile_refund_and_charge() -> None:
    lim, clock, store = make([Limit("rpm", 1000, 60), Limit("tpm", 6000, 60, unit="tokens")], max_wait_s=60)
    grant = lim.try_acquire({"tpm": 3000})
    assert grant.granted and grant.costs == {"rpm": 1, "tpm": 3000}
    before = store.get("acct#tpm")["tat"]
    lim.reconcile(grant, {"tpm": 1000})  # used less: refund 2000 tokens of time
    after = store.get("acct#tpm")["tat"]
    assert after == pytest.approx(before - 2000 * 60 / 6000)
    lim.reconcile(grant, {"tpm": 5000})  # (relative to the estimate) used more: charge 2000
    assert store.get("acct#tpm")["tat"] == pytest.approx(after + 4000 * 0.01)


def test_a_token_window_refunded_by_another_worker_is_re_read_before_a_refusal() -> None:
    # A call reserves prompt + max_tokens and hands most of it back when the reply says what it used: a
    # worker that saw the window busy a moment ago must not turn away from it on that view alone.
    store, clock = MemoryStore(), FakeClock()
    limits = [Limit("tpm", 2400, 30, unit="tokens")]
    sender, _, _ = make(limits, clock=clock, store=store, max_wait_s=5, token_view_s=0.5)
    other, _, _ = make(limits, clock=clock, store=store, max_wait_s=5, token_view_s=0.5)
    grant = sender.try_acquire({"tpm": 600})  # 600 of 2,400 tokens, paced over 1,800: next slot 10 s away
    assert grant.granted
    assert not other.try_acquire({"tpm": 600}).granted  # a write's answer: busy beyond the horizon
    sender.reconcile(grant, {"tpm": 150})  # the reply used 150: the slot is 2.5 s away now
    clock.advance(0.2)
    writes = store.writes
    assert not other.try_acquire({"tpm": 600}).granted  # a fresh view (0.2 s old) is trusted: no read
    assert store.writes == writes
    clock.advance(0.4)
    late = other.try_acquire({"tpm": 600})  # 0.6 s old: re-read, the refund seen, granted
    assert late.granted and late.wait_s == pytest.approx(2.5 - 0.6)
    assert store.writes == writes + 1  # the grant's own write, nothing else


def test_concurrency_leases_release_and_expire() -> None:
    lim, clock, _ = make([Limit("conc", 2, 30, "concurrency")])
    a, b = lim.try_acquire(), lim.try_acquire()
    assert a.granted and b.granted and a.lease_id != b.lease_id
    c = lim.try_acquire()
    assert not c.granted and c.wait_s == pytest.approx(30)
    lim.release(a)
    assert lim.try_acquire().granted
    assert not lim.try_acquire().granted
    clock.advance(30.1)  # a crashed holder's lease comes back
    assert lim.try_acquire().granted


def test_two_processes_share_state_through_the_store() -> None:
    store, clock = MemoryStore(), FakeClock()
    one, _, _ = make([Limit("rpm", 2, 60)], clock=clock, store=store, max_wait_s=0)
    two, _, _ = make([Limit("rpm", 2, 60)], clock=clock, store=store, max_wait_s=0)
    assert one.try_acquire().granted
    assert not two.try_acquire().granted  # stale cache in `two` is corrected by the failed write
    clock.advance(30)
    assert two.try_acquire().granted
    other_key = DynamoDBRateLimiter(
        "t", "other", [Limit("rpm", 2, 60)], clock=clock, store=store, max_wait_s=0
    )
    assert other_key.try_acquire().granted


def test_one_write_per_grant_without_contention() -> None:
    lim, clock, store = make([Limit("rpm", 10, 1)], max_wait_s=0)
    for _ in range(100):
        clock.advance(0.1)
        assert lim.try_acquire().granted
    assert store.writes == 100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("rpm", 0, 60), "capacity must be a whole number > 0"),
        (("rpm", 5, 0), "per_seconds must be > 0"),
        (("rpm", 5, 60, "hourly"), "kind must be one of"),
        (("", 5, 60), "must be non-empty"),
    ],
)
def test_bad_limits_fail_at_construction(args: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Limit(*args)


def test_bad_limiter_config() -> None:
    with pytest.raises(ConfigError, match="unique"):
        DynamoDBRateLimiter("t", "k", [Limit("a", 1, 1), Limit("a", 2, 1)], store=MemoryStore())
    with pytest.raises(ConfigError, match="at least one"):
        DynamoDBRateLimiter("t", "k", [], store=MemoryStore())
    lim, _, _ = make([Limit("rpm", 1, 1)])
    with pytest.raises(ConfigError, match="unknown limit names"):
        lim.try_acquire({"tokens": 5})


def test_profiles() -> None:
    free = {lim.name: lim for lim in load_profile("openrouter-free", time_scale=0.05)}
    assert free["rpm"].capacity == 20 and free["rpm"].per_seconds == pytest.approx(3.0)
    assert free["rpd"].capacity == 50 and free["rpd"].kind == "utc_day"
    raised = {lim.name: lim for lim in load_profile("openrouter-free", overrides={"rpd": {"capacity": 1000}})}
    assert raised["rpd"].capacity == 1000
    with pytest.raises(ConfigError, match="known profiles: .*openrouter-free"):
        load_profile("nope")


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 10),
    window=st.floats(0.5, 10),
    gaps=st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=60),
    horizon=st.floats(0, 5),
)
def test_no_window_ever_holds_more_than_capacity(
    capacity: int, window: float, gaps: list[float], horizon: float
) -> None:
    lim, clock, _ = make([Limit("r", capacity, window)], max_wait_s=horizon)
    sends = []
    for gap in gaps:
        clock.advance(gap)
        grant = lim.try_acquire()
        if grant.granted:
            sends.append(clock.now() + grant.wait_s)
    assert max_in_window(sends, window) <= capacity


@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(1, 20), window=st.floats(0.5, 100), burst=st.integers(1, 40))
def test_a_refusals_wait_is_honest(capacity: int, window: float, burst: int) -> None:
    lim, clock, _ = make([Limit("r", capacity, window), Limit("d", 10_000, 0, "utc_day")], max_wait_s=0)
    for _ in range(burst):
        lim.try_acquire()
    refused = lim.try_acquire()
    if not refused.granted:
        clock.advance(refused.wait_s)
        assert lim.try_acquire().granted


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 500), st.integers(0, 500)), min_size=1, max_size=20))
def test_reconcile_never_leaves_negative_or_leaked_units(calls: list[tuple[int, int]]) -> None:
    lim, clock, store = make([Limit("rpd", 10**6, 0, "utc_day")])
    total = 0
    for estimate, actual in calls:
        grant = lim.try_acquire({"rpd": estimate})
        assert grant.granted
        lim.reconcile(grant, {"rpd": actual})
        total += actual
    assert lim.used_today("rpd") == total >= 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["acquire", "release", "tick"]), min_size=1, max_size=60))
def test_leases_never_exceed_capacity(ops: list[str]) -> None:
    lim, clock, store = make([Limit("c", 3, 10, "concurrency")])
    held = []
    for op in ops:
        if op == "acquire":
            g = lim.try_acquire()
            if g.granted:
                held.append(g)
        elif op == "release" and held:
            lim.release(held.pop(0))
        else:
            clock.advance(4)
        live = [v for v in (store.get("acct#c") or {}).get("leases", {}).values() if v > clock.now()]
        assert len(live) <= 3


class FailingOn(MemoryStore):
    """The store goes down for one key: writes to it fail as DynamoDB's would after the client's retries."""

    def __init__(self, pk_part: str) -> None:
        super().__init__()
        self.pk_part = pk_part

    def apply(self, op):  # type: ignore[no-untyped-def]
        if self.pk_part in op.pk:
            raise LimiterUnavailable("DynamoDB is unavailable", hint="retry")
        return super().apply(op)


def test_a_store_failure_mid_request_gives_back_what_was_taken() -> None:
    limits = [Limit("rpm", 100, 60), Limit("rpd", 10, 86_400, "utc_day"), Limit("conc", 2, 60, "concurrency")]
    lim, _, store = make(limits, store=FailingOn("#conc"), max_wait_s=10)
    with pytest.raises(LimiterUnavailable):
        lim.try_acquire()
    assert lim.used_today("rpd") == 0  # the day's count was taken before the lease failed, then returned
    assert (store.get("acct#rpm") or {}).get("tat", 0) <= lim.clock.now()  # and no window slot is held
    store.pk_part = "#nothing"  # the store is back: the full day is still there
    assert [lim.try_acquire().granted for _ in range(2)] == [True, True]


class SlowStore(MemoryStore):
    """Each write takes `latency_s` of the injected clock, and the order of the writes is kept."""

    def __init__(self, clock: FakeClock, latency_s: float) -> None:
        super().__init__()
        self.clock, self.latency_s, self.order = clock, latency_s, []

    def apply(self, op):  # type: ignore[no-untyped-def]
        self.clock.advance(self.latency_s)
        self.order.append(op.pk)
        return super().apply(op)


def test_the_request_window_is_reserved_last_and_its_slot_is_the_send_time() -> None:
    # A send must leave at its reserved slot: a write after the slot (the day's counter) would make
    # it leave late by that write's latency, and late sends bunch up in the provider's window.
    clock = FakeClock()
    store = SlowStore(clock, latency_s=0.2)
    lim, _, _ = make([Limit("rpm", 20, 60), Limit("rpd", 1000, 86_400, "utc_day")], clock=clock, store=store)
    first = lim.try_acquire()
    slot = store.get("acct#rpm")["tat"] - 3.0  # the window's reserved slot (emission interval 3 s)
    assert [pk.split("#")[1] for pk in store.order] == ["rpd", "rpm"]  # the window's write is the last
    assert first.send_at == pytest.approx(slot)  # the slot, not the time of a later write
    assert clock.now() - slot == pytest.approx(0.2)  # it returns one write (the window's own) after its slot
    second = lim.try_acquire()
    assert second.send_at - first.send_at == pytest.approx(3.0)
    assert second.wait_s == pytest.approx(second.send_at - clock.now())


def test_after_slow_writes_a_slot_starts_late_enough_that_the_grant_comes_back_before_it() -> None:
    # An idle window's slot used to be the instant the request was planned, so every grant came back
    # a write's round trip after its slot and the send left late; late sends followed by on-time ones
    # put more than the limit into one of the provider's windows.
    clock = FakeClock()
    store = SlowStore(clock, latency_s=0.2)
    lim, _, _ = make([Limit("rpm", 20, 60), Limit("rpd", 1000, 86_400, "utc_day")], clock=clock, store=store)
    lim.try_acquire()  # two writes: 0.4 s
    assert lim.lead() == pytest.approx(0.4)
    clock.advance(10.0)  # the window goes idle
    asked = clock.now()
    grant = lim.try_acquire()
    # The window is planned after the day's write (0.2 s) and its slot starts the lead (0.4 s) later.
    assert grant.granted and grant.send_at == pytest.approx(asked + 0.2 + 0.4, abs=1e-6)
    assert clock.now() == pytest.approx(asked + 0.4, abs=1e-6)  # back before its slot: nothing sends late
    assert grant.wait_s == pytest.approx(0.2)


def test_the_lead_has_a_floor_and_never_passes_the_longest_wait() -> None:
    clock = FakeClock()
    lim, _, _ = make([Limit("rpm", 20, 60)], clock=clock, lead_s=0.1, max_wait_s=5.0)
    asked = clock.now()
    assert lim.try_acquire().send_at == pytest.approx(
        asked + 0.1, abs=1e-6
    )  # nothing measured yet: the floor
    slow = SlowStore(clock, latency_s=30.0)
    lim2, _, _ = make([Limit("rpm", 20, 60)], clock=clock, store=slow, max_wait_s=5.0)
    lim2.try_acquire()
    assert lim2.lead() == 5.0
    with pytest.raises(ConfigError, match="lead_s must be >= 0"):
        make([Limit("rpm", 20, 60)], lead_s=-1.0)


@settings(max_examples=60)
@example([(600, 0.25, 0.5)] * 80)  # document_pipeline on Groq: ~100 prompt + 512 max_tokens, ~150 used
@given(
    st.lists(
        st.tuples(st.integers(50, 900), st.floats(0.05, 1.0), st.floats(0, 4)),  # reserved, used share, gap
        min_size=5,
        max_size=80,
    )
)
def test_a_provider_counting_the_reservation_at_admission_never_sees_its_token_window_overrun(
    calls: list[tuple[int, float, float]],
) -> None:
    # Groq-style: the provider counts prompt + max_tokens when it admits a request and the reply's usage
    # after; each window of 30 s holds at most 2,400 tokens so counted.
    cap, window = 2400, 30.0
    lim, clock, _ = make([Limit("tpm", cap, window, unit="tokens")], max_wait_s=0)
    sent: list[tuple[float, float]] = []  # (time, tokens the provider counts once the reply is in)
    for reserved, share, gap in calls:
        clock.advance(gap)
        grant = lim.try_acquire({"tpm": reserved})
        if not grant.granted:
            continue
        now = clock.now()
        in_window = sum(tokens for t, tokens in sent if t > now - window)
        assert in_window + reserved <= cap
        used = max(1, int(reserved * share))
        sent.append((now, used))
        lim.reconcile(grant, {"tpm": used})


def test_a_late_send_moves_the_schedule_back_and_an_on_time_one_costs_nothing() -> None:
    lim, clock, store = make(
        [Limit("rpm", 20, 60), Limit("rpd", 100, 0, "utc_day")], late_s=0.25, max_wait_s=10
    )
    first = lim.try_acquire()
    writes = store.writes
    assert not lim.sent(first, first.send_at + 0.2)  # within late_s: no write
    assert store.writes == writes
    second = lim.try_acquire()
    assert second.send_at - first.send_at == pytest.approx(3.0)
    assert lim.sent(second, second.send_at + 1.5)  # its write came back 1.5 s after its slot
    assert store.writes == writes + 3  # the grant's two (day, window), then one add on the window
    third = lim.try_acquire()
    assert third.send_at - second.send_at == pytest.approx(1.5 + 3.0)  # spaced from the real send
    assert store.get("acct#rpd#" + first.day)["count"] == 3  # nothing counted twice or given back


@settings(max_examples=80, deadline=None)
# One send 2 s late after its slot: without moving the schedule, the on-time send a window after it lands
# in the same provider window.
@example([(0.0, 2.0, 0.0)] + [(3.1, 0.0, 0.0)] * 12)
@given(
    st.lists(
        # the gap before a caller asks, how late its send leaves after its slot, its way to the provider
        st.tuples(st.floats(0, 4), st.one_of(st.just(0.0), st.floats(0, 12)), st.floats(0, 0.75)),
        min_size=1,
        max_size=60,
    )
)
def test_late_sends_never_crowd_a_providers_window(calls: list[tuple[float, float, float]]) -> None:
    # The provider counts arrivals in any 30-s window, at most 5. The limiter paces over 31 s (1 s of
    # allowance for arrivals late after their slot), moves its schedule for a send later than 0.25 s, and
    # the way to the provider takes up to the 0.75 s left. Asks reach 5 s ahead (the horizon).
    window, cap = 30.0, 5
    lim, clock, _ = make([Limit("rpm", cap, window + 1.0)], max_wait_s=5.0, late_s=0.25)
    events: list[tuple[float, int, Any]] = []  # (time, order, what): asks and sends in time order
    at = clock.now()
    for i, (gap, late, way) in enumerate(calls):
        at += gap
        heapq.heappush(events, (at, i, ("ask", late, way)))
    arrivals: list[float] = []
    order = len(calls)
    while events:
        t, _, event = heapq.heappop(events)
        clock.advance(max(0.0, t - clock.now()))
        if event[0] == "ask":
            _, late, way = event
            grant = lim.try_acquire()
            if grant.granted:
                order += 1
                heapq.heappush(events, (grant.send_at + late, order, ("send", grant, way)))
        else:
            _, grant, way = event
            lim.sent(grant, clock.now())
            arrivals.append(clock.now() + way)
    assert max_in_window(arrivals, window) <= cap


@settings(max_examples=150, deadline=None)
# A large request books the token window ahead; the next one's request slot came out at its own (earlier)
# tat, so the third was paced a request window after a slot the second never sent at.
@example(cap=1, window=1.0, tokens=100, calls=[(0.0, 51), (0.0, 1), (0.0, 1)], horizon=2.0)
@given(
    cap=st.integers(1, 8),
    window=st.floats(1, 10),
    tokens=st.integers(100, 2000),
    calls=st.lists(st.tuples(st.floats(0, 3), st.integers(1, 100)), min_size=1, max_size=60),
    horizon=st.floats(0, 5),
)
def test_a_request_paced_on_several_windows_keeps_every_one_at_its_send_time(
    cap: int, window: float, tokens: int, calls: list[tuple[float, int]], horizon: float
) -> None:
    # The request leaves once, at the latest of its windows' slots (here a token window's, when a large
    # request books it ahead): the request window must hold its capacity at the send times, not at slots
    # of its own that came out earlier.
    limits = [Limit("rpm", cap, window), Limit("tpm", tokens, window, unit="tokens")]
    lim, clock, _ = make(limits, max_wait_s=horizon)
    sends = []
    for gap, cost in calls:
        clock.advance(gap)
        grant = lim.try_acquire({"rpm": 1, "tpm": cost})
        if grant.granted:
            sends.append(grant.send_at)
    assert max_in_window(sends, window) <= cap
