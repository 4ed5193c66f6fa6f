"""Limiter rows of the fault matrix: DynamoDB throttling and errors, a skewed worker clock, and
skewed interleavings as a property. Faults come from a botocore `before-send` handler on the limiter's
own client, so the real retries (botocore's and the store's) run against DynamoDB Local. A "lost"
fault applies the write for real and then answers 500, as a timeout after the commit would."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.httpsession import URLLib3Session
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from stepgraph import resources
from stepgraph.clock import FakeClock
from stepgraph.errors import ConfigError
from stepgraph.limiter import DynamoDBRateLimiter, Limit, LimiterUnavailable, MemoryStore, load_profile
from stepgraph.limiter.dynamodb_local import _free_port
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.router import ModelRouter, Route
from stepgraph.providers.table import ModelSpec
from tests.fixtures.aws import RawBody
from tests.fixtures.dynamodb_local import ddb_client
from tests.fixtures.windows import max_in_window

# code -> the HTTP status DynamoDB answers it with
ERRORS = {
    "ProvisionedThroughputExceededException": 400,
    "ThrottlingException": 400,
    "InternalServerError": 500,
}


def _client(endpoint: str, *, sdk_retries: bool) -> Any:
    """Without botocore's retries only the store's own run; with them, as the runtime's clients do."""
    return ddb_client(endpoint, None if sdk_retries else Config(retries={"total_max_attempts": 1}))


def _answer(request: Any, status: int, body: bytes, content_type: str) -> AWSResponse:
    return AWSResponse(request.url, status, {"Content-Type": content_type}, RawBody(body))


def _error(request: Any, code: str) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"})
    return _answer(request, ERRORS[code], body.encode(), "application/x-amz-json-1.0")


class Faults:
    """Decides per UpdateItem send: pass, answer an error, or apply then answer 500 ("lost").
    Counts every send, and per thread what the last API call really wrote."""

    def __init__(self, client: Any, decide: Callable[[], str | None]) -> None:
        self.decide, self.sends, self.injected = decide, 0, {c: 0 for c in [*ERRORS, "lost"]}
        self._http = URLLib3Session()
        self._lock, self._tls = threading.Lock(), threading.local()
        client.meta.events.register("before-send.dynamodb.UpdateItem", self._send)
        client.meta.events.register("after-call.dynamodb.UpdateItem", self._after)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        fault = self.decide()
        with self._lock:
            self.sends += 1
            if fault:
                self.injected[fault] += 1
        if fault == "lost":
            self._http.send(request)  # the write commits; its answer never arrives
            return _error(request, "InternalServerError")
        return _error(request, fault) if fault else None

    def _after(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if http_response.status_code == 200:
            self._tls.ok = getattr(self._tls, "ok", 0) + 1
            self._tls.tat = float(parsed["Attributes"]["tat"]["N"])

    def begin(self) -> None:
        self._tls.ok, self._tls.tat = 0, None

    def seen(self) -> tuple[int, float | None]:
        """Successful UpdateItems since `begin` in this thread, and the `tat` the last one wrote."""
        return self._tls.ok, self._tls.tat


# -- 1. DynamoDB throttling and errors ---------------------------------------------------------------


def test_faulty_writes_never_yield_a_grant(limiter_table: tuple[str, str]) -> None:
    """Six workers, a third of whose UpdateItems fail (some after committing): every grant is the slot
    a successful conditional write reserved, and no window of real sends exceeds the limit."""
    endpoint, table = limiter_table
    limit, workers, seconds = Limit("r", 10, 1.0), 6, 3.0
    interval = limit.per_seconds / limit.capacity
    lock = threading.Lock()
    grants: list[tuple[int, float | None, float, float]] = []  # writes seen, tat, send_at, real send
    all_faults: list[Faults] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)

        def decide() -> str | None:
            x = rng.random()
            return "lost" if x < 0.1 else rng.choice(list(ERRORS)) if x < 0.35 else None

        client = _client(endpoint, sdk_retries=seed % 2 == 0)  # half see every fault in the store
        faults = Faults(client, decide)
        with lock:
            all_faults.append(faults)
        lim = DynamoDBRateLimiter(table, "faulty", [limit], client=client, max_wait_s=0.5)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            faults.begin()
            try:
                g = lim.try_acquire()
            except LimiterUnavailable:
                continue  # a long streak of faults: typed, and nothing granted
            if not g.granted:
                time.sleep(min(g.wait_s, 0.2))
                continue
            ok, tat = faults.seen()
            time.sleep(g.wait_s)
            with lock:
                grants.append((ok, tat, g.send_at, time.time()))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))  # re-raises anything a worker raised

    injected = {c: sum(f.injected[c] for f in all_faults) for c in all_faults[0].injected}
    assert all(n > 0 for n in injected.values()), injected
    assert len(grants) >= 10, f"only {len(grants)} grants under faults"
    for ok, tat, send_at, _ in grants:
        assert ok >= 1 and tat is not None, "granted without a successful write"
        assert tat - interval == pytest.approx(send_at, abs=1e-6), "grant is not the slot written"
    assert max_in_window([g[2] for g in grants], limit.per_seconds) <= limit.capacity
    assert min(g[3] - g[2] for g in grants) >= -0.002, "a worker sent before its slot"


@pytest.mark.parametrize("code", list(ERRORS))
def test_dynamodb_down_fails_closed_after_bounded_attempts(limiter_table: tuple[str, str], code: str) -> None:
    endpoint, table = limiter_table
    client = _client(endpoint, sdk_retries=False)
    faults = Faults(client, lambda: code)
    lim = DynamoDBRateLimiter(table, "down", [Limit("r", 5, 1.0)], client=client, max_wait_s=1.0)
    started = time.monotonic()
    with pytest.raises(LimiterUnavailable, match="kept failing.*nothing was granted"):
        lim.acquire()
    assert faults.sends == 5  # DynamoDBStore.max_attempts, then it stops
    assert time.monotonic() - started < 2.0  # full jitter over 0.02·2^k s
    raw = ddb_client(endpoint).get_item(TableName=table, Key={"pk": {"S": "down#r"}}, ConsistentRead=True)
    assert "Item" not in raw  # no slot was taken either


def test_deployed_client_retries_multiply_but_stay_bounded(limiter_table: tuple[str, str]) -> None:
    """With botocore's own retries (as the runtime's clients have) each store attempt is up to 4
    HTTP sends: 20 in all, then the typed error."""
    endpoint, table = limiter_table
    client = _client(endpoint, sdk_retries=True)
    faults = Faults(client, lambda: "InternalServerError")
    lim = DynamoDBRateLimiter(table, "down", [Limit("r", 5, 1.0)], client=client)
    with pytest.raises(LimiterUnavailable):
        lim.try_acquire()
    assert 5 < faults.sends <= 5 * 4


def test_other_dynamodb_failures_are_typed(limiter_table: tuple[str, str]) -> None:
    """A proxy's 503 page, a missing table and a closed port: each a LimiterUnavailable."""
    endpoint, table = limiter_table
    client = _client(endpoint, sdk_retries=True)
    sends = [0]

    def proxy_page(request: Any, **_: Any) -> AWSResponse:
        sends[0] += 1
        return _answer(request, 503, b"<html>Service Unavailable</html>", "text/html")

    client.meta.events.register("before-send.dynamodb.UpdateItem", proxy_page)
    lim = DynamoDBRateLimiter(table, "proxy", [Limit("r", 5, 1.0)], client=client)
    with pytest.raises(LimiterUnavailable, match="kept failing"):
        lim.try_acquire()
    assert sends[0] > 5  # retried like any 5xx
    gone = DynamoDBRateLimiter("no-such-table", "k", [Limit("r", 5, 1.0)], client=ddb_client(endpoint))
    with pytest.raises(LimiterUnavailable, match="ResourceNotFoundException"):
        gone.try_acquire()
    closed = _client(f"http://127.0.0.1:{_free_port()}", sdk_retries=False)  # nothing listens
    unreachable = DynamoDBRateLimiter(table, "k", [Limit("r", 5, 1.0)], client=closed)
    with pytest.raises(LimiterUnavailable, match="Could not connect"):
        unreachable.try_acquire()


def test_the_router_never_calls_the_provider_without_a_slot(limiter_table: tuple[str, str]) -> None:
    endpoint, table = limiter_table
    client = _client(endpoint, sdk_retries=True)
    Faults(client, lambda: "InternalServerError")
    lim = DynamoDBRateLimiter(table, "acct", [Limit("rpm", 20, 60)], client=client)
    calls: list[Any] = []
    provider = RunnableLambda(lambda messages: calls.append(messages) or AIMessage("reply"))
    route = Route("p", "m", ModelSpec(free=True), KeyRing("p", [("main", "sk")]), lambda _: provider, lim)
    with pytest.raises(LimiterUnavailable):
        ModelRouter([route], clock=FakeClock()).invoke("hi")
    assert calls == []
    # graph-step lets the typed error out; the state machine retries it by its class name.
    retried: list[str] = []
    asl = resources.statemachine_text()
    json.loads(
        asl,
        object_hook=lambda d: retried.extend(e for r in d.get("Retry", []) for e in r["ErrorEquals"]) or d,
    )
    assert "LimiterUnavailable" in retried


def test_a_stale_idle_guess_within_reach_is_granted_not_refused() -> None:
    """A caller whose last view shows the window idle guesses so; when another caller got there first
    and the next slot is still within its horizon, it takes that slot instead of being refused."""
    clock, store = FakeClock(), MemoryStore()
    limit = Limit("r", 10, 10.0)  # a slot a second
    late, first = (
        DynamoDBRateLimiter("t", "k", [limit], clock=clock, store=store, max_wait_s=5) for _ in range(2)
    )
    assert late.try_acquire().granted  # `late` remembers the queue ending at t0 + 1
    clock.advance(2)
    assert first.try_acquire().granted  # idle at t0 + 2: the queue now ends at t0 + 3
    grant = late.try_acquire()  # its view says idle; the next slot is 1 s away, within 5 s
    assert grant.granted and grant.wait_s == pytest.approx(1.0)
    assert store.writes == 4  # the failed guess and its retry


# -- 2. One worker's clock skewed --------------------------------------------------------------------


class SkewedClock:
    """The system clock off by `offset` seconds; sleeping is unaffected (intervals are real)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


SCALE = 0.05  # the openrouter-free 20 per 60 s, scaled to 20 per 3 s
MARGIN = 0.02  # the runtime's default limit_margin (arrival jitter), as wiring applies it
LATE = 0.3  # how late a woken thread may really send on a loaded test machine (16 threads and Java)


@pytest.mark.parametrize(
    "skew",
    [2.0 * SCALE, -2.0 * SCALE, 2.0, -2.0],
    ids=["ahead-scaled", "behind-scaled", "ahead-2s", "behind-2s"],
)
def test_a_skewed_worker_cannot_overrun_the_window(limiter_table: tuple[str, str], skew: float) -> None:
    """Sixteen threads on one key: three share a limiter whose clock is `skew` off, thirteen have their
    own on true time. Every real window of the provider's length holds at most its limit."""
    endpoint, table = limiter_table
    provider = next(lim for lim in load_profile("openrouter-free", time_scale=SCALE) if lim.name == "rpm")
    # Paced as the runtime paces it: the profile scaled with the limit margin.
    rpm = {lim.name: lim for lim in load_profile("openrouter-free", time_scale=SCALE * (1 + MARGIN))}["rpm"]

    def limiter(offset: float) -> DynamoDBRateLimiter:
        client = ddb_client(endpoint)
        client.describe_table(TableName=table)  # a warm connection, as a warm Lambda has
        return DynamoDBRateLimiter(
            table,
            "skewed",
            [rpm],
            client=client,
            clock=SkewedClock(offset),
            # The horizon is scaled but the skew is not: give every worker the same reach in real
            # time, so the skewed one competes instead of starving (or starving the others).
            max_wait_s=10 * SCALE + max(skew, 0.0) - offset,
            max_skew_s=abs(skew),
        )

    skewed = limiter(skew)
    workers = [(skewed, skew)] * 3 + [(limiter(0.0), 0.0) for _ in range(13)]
    lock = threading.Lock()
    sends: list[tuple[bool, float, float, float]] = []  # skewed?, slot, intended and measured real send

    def worker(lim: DynamoDBRateLimiter, offset: float) -> None:
        rng = random.Random()
        deadline = time.time() + 6.0
        while time.time() < deadline:
            g = lim.try_acquire()
            if g.granted:
                lim.clock.sleep(g.wait_s)
                with lock:
                    sends.append((lim is skewed, g.send_at, g.send_at - offset, time.time()))
            else:  # refused callers come back with jitter, so no thread wins every race by rhythm
                time.sleep(min(g.wait_s, 0.2) * rng.uniform(0.5, 1.0))

    with ThreadPoolExecutor(len(workers)) as pool:
        list(pool.map(lambda w: worker(*w), workers))

    assert sum(1 for s in sends if s[0]) >= 3, "the skewed limiter got too few grants to matter"
    assert sum(1 for s in sends if not s[0]) >= 3, "the true-time limiters got too few grants to matter"
    # The slot each worker sleeps for, on true time: exact.
    assert max_in_window([s[2] for s in sends], provider.per_seconds) <= provider.capacity
    # When the threads really woke: late by scheduling and the write's latency, never early.
    assert min(s[3] - s[2] for s in sends) >= -0.002, "a worker sent before its slot on true time"
    assert max_in_window([s[3] for s in sends], provider.per_seconds - LATE) <= provider.capacity
    # Throughput on the shared schedule, past the start (where the first writers' clocks may leave a
    # gap of up to the skew): the paced rate.
    slots = sorted(s[1] for s in sends)
    later = [t for t in slots if t >= (slots[0] + slots[-1]) / 2]
    rate = (len(later) - 1) / (later[-1] - later[0])
    assert rate >= 0.8 * provider.capacity / (rpm.per_seconds + abs(skew))


# -- 3. Skewed interleavings, as a property ----------------------------------------------------------


class OffsetClock:
    """A worker's view of a shared fake clock: `offset` may change between calls (drift, NTP steps)."""

    def __init__(self, real: FakeClock) -> None:
        self.real, self.offset = real, 0.0

    def now(self) -> float:
        return self.real.now() + self.offset

    def sleep(self, seconds: float) -> None:  # callers sleep concurrently: the test keeps time
        pass


def _real_sends(
    limit: Limit, skew: float, allowance: float, horizon: float, calls: list[tuple[int, float, float]]
) -> list[float]:
    real, store = FakeClock(), MemoryStore()
    clocks = [OffsetClock(real) for _ in range(5)]
    limiters = [
        DynamoDBRateLimiter("t", "k", [limit], clock=c, store=store, max_wait_s=horizon, max_skew_s=allowance)
        for c in clocks
    ]
    sends = []
    for who, gap, where in calls:
        real.advance(gap)
        clocks[who].offset = where * skew  # every clock stays within [0, skew] of true time
        g = limiters[who].try_acquire()
        if g.granted:
            sends.append(real.now() + g.wait_s)  # the worker sleeps wait_s of real time, then sends
    return sends


@settings(max_examples=120, deadline=None)
@given(
    capacity=st.integers(1, 8),
    window=st.floats(0.5, 10),
    skew=st.floats(0, 3),
    horizon=st.floats(0, 5),
    calls=st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1.5), st.floats(0, 1)), min_size=1, max_size=80),
)
def test_bounded_skew_never_overruns_any_window(
    capacity: int, window: float, skew: float, horizon: float, calls: list[tuple[int, float, float]]
) -> None:
    limit = Limit("r", capacity, window)
    sends = _real_sends(limit, skew, skew, horizon, calls)
    assert max_in_window(sends, window) <= capacity


def test_without_the_allowance_a_two_second_skew_overruns() -> None:
    """Why the allowance exists: the same interleaving with `max_skew_s=0` breaks the window."""
    limit = Limit("rpm", 20, 3.0)
    calls = [(i % 2, 0.05, 1.0 if i % 2 else 0.0) for i in range(400)]  # worker 1 is 2 s ahead
    assert max_in_window(_real_sends(limit, 2.0, 0.0, 3.0, calls), 3.0) > 20
    assert max_in_window(_real_sends(limit, 2.0, 2.0, 3.0, calls), 3.0) <= 20
    with pytest.raises(ConfigError, match="max_skew_s must be >= 0"):
        DynamoDBRateLimiter("t", "k", [limit], store=MemoryStore(), max_skew_s=-1.0)
