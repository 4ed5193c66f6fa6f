"""Limits learned from rate-limit headers, and the shared circuit breaker (fake clock, in-memory store)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableLambda

from stepgraph.clock import FakeClock
from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
from stepgraph.limiter.breaker import CircuitBreaker
from stepgraph.providers import Throttled
from stepgraph.providers.dialects import reported_limits
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.router import ModelRouter, Route
from stepgraph.providers.table import ModelSpec
from stepgraph.usage.callback import UsageCallbackHandler


class Sink:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def add(self, record: Any) -> None:
        self.records.append(record)


def http_error(status: int, headers: dict[str, str] | None = None, body: Any = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://provider/chat/completions")
    return openai.APIStatusError(
        f"HTTP {status}", response=httpx.Response(status, headers=headers or {}, request=request), body=body
    )


class Script:
    def __init__(self, name: str, *outcomes: Any, headers: dict[str, str] | None = None) -> None:
        self.name, self.outcomes, self.calls, self.headers = name, list(outcomes), 0, headers or {}
        self.metas: list[dict[str, Any]] = []

    def factory(self, key: str) -> Any:
        def call(messages: Any, config: Any = None, **kw: Any) -> AIMessage:
            self.calls += 1
            self.metas.append(dict((config or {}).get("metadata", {})))
            outcome = self.outcomes.pop(0) if self.outcomes else "ok"
            if isinstance(outcome, BaseException):
                raise outcome
            meta = {"token_usage": {"prompt_tokens": 5, "completion_tokens": 5}, "headers": self.headers}
            return AIMessage(f"{outcome} from {self.name}", response_metadata=meta)

        return RunnableLambda(call)


def route(script: Script, lim: Any = None, *, dialect: str = "none", breaker: Any = None) -> Route:
    return Route(
        script.name,
        "m",
        ModelSpec(free=True, max_tokens=10),
        KeyRing(script.name, [("main", "sk")]),
        script.factory,
        lim,
        pool="pool:p",
        dialect=dialect,
        breaker=breaker,
    )


GROQ_HEADERS = {
    "x-ratelimit-limit-requests": "1000",
    "x-ratelimit-limit-tokens": "6000",
    "x-ratelimit-remaining-requests": "999",
    "x-ratelimit-remaining-tokens": "5990",
    "x-ratelimit-reset-requests": "1m26.4s",
    "x-ratelimit-reset-tokens": "0.1s",
}


def test_dialects_name_the_limits_their_headers_report() -> None:
    now = 1_767_225_600.0
    assert reported_limits("openai", GROQ_HEADERS, now=now) == {"rpd": 1000, "tpm": 6000}
    cerebras = {"x-ratelimit-limit-requests-day": "14400", "x-ratelimit-limit-tokens-minute": "60000"}
    assert reported_limits("openai", cerebras, now=now) == {"rpd": 14400, "tpm": 60000}
    minute = {"X-RateLimit-Limit": "16", "X-RateLimit-Reset": str(int((now + 30) * 1000))}
    day = {"X-RateLimit-Limit": "50", "X-RateLimit-Reset": str(int((now + 7200) * 1000))}
    assert reported_limits("openrouter", minute, now=now) == {"rpm": 16}
    assert reported_limits("openrouter", day, now=now) == {"rpd": 50}
    assert reported_limits("none", GROQ_HEADERS, now=now) == {}


def limiter(
    store: MemoryStore, clock: FakeClock, limits: list[Limit], key: str = "groq:main"
) -> DynamoDBRateLimiter:
    return DynamoDBRateLimiter(
        "t", key, limits, store=store, clock=clock, max_wait_s=5.0, learned_quiet_s=600, learned_refresh_s=0
    )


def test_a_reply_reporting_a_lower_limit_lowers_it_for_every_worker_and_the_record_says_so() -> None:
    clock, store = FakeClock(), MemoryStore()
    profile = [Limit("rpm", 30, 60), Limit("tpm", 8000, 60, unit="tokens")]
    mine, theirs = limiter(store, clock, profile), limiter(store, clock, profile)
    groq = Script("groq", headers=GROQ_HEADERS)
    r = ModelRouter([route(groq, mine, dialect="openai")], clock=clock)
    r.invoke("hi")
    theirs.try_acquire({"tpm": 1})
    assert theirs.capacity("tpm") == 6000 and theirs.capacity("rpm") == 30  # another worker sees it
    r.invoke("hi")
    sink = Sink()
    handler = UsageCallbackHandler(sink)
    for meta in groq.metas:  # what the router handed each attempt becomes its usage record
        rid = uuid.uuid4()
        handler.on_chat_model_start({}, [[]], run_id=rid, metadata=meta)
        handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=AIMessage("x"))]]), run_id=rid)
    assert sink.records[0].learned_limit == "" and sink.records[1].learned_limit == "tpm=6000"
    assert sink.records[1].deployment == "groq:m" and sink.records[1].account == "main"
    clock.advance(601)  # a quiet period: the profile applies again
    theirs.try_acquire({"tpm": 1})
    assert theirs.capacity("tpm") == 8000


def test_a_learned_limit_is_never_raised_above_the_profile() -> None:
    clock, store = FakeClock(), MemoryStore()
    lim = limiter(store, clock, [Limit("tpm", 5000, 60, unit="tokens")])
    assert lim.learned.lower("tpm", 6000, ceiling=5000, reason="x") is None
    assert lim.learned.lower("tpm", 4000, ceiling=5000, reason="x") is not None
    assert lim.learned.lower("tpm", 4500, ceiling=5000, reason="higher") is None  # only lower replaces
    lim.try_acquire({"tpm": 1})
    assert lim.capacity("tpm") == 4000


def test_an_openrouter_429_with_a_lower_limit_header_lowers_rpm() -> None:
    clock, store = FakeClock(), MemoryStore()
    lim = limiter(store, clock, [Limit("rpm", 20, 60)], key="openrouter:main")
    reset = str(int((clock.now() + 20) * 1000))
    s = Script(
        "openrouter",
        http_error(
            429, {"X-RateLimit-Limit": "16", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        ),
    )
    metrics = type(
        "M",
        (),
        {
            "learned": [],
            "rate_limited": lambda *a, **k: None,
            "fallback": lambda *a: None,
            "learned_limit": lambda self, *a: self.learned.append(a),
        },
    )()
    with pytest.raises(Throttled):
        ModelRouter(
            [route(s, lim, dialect="openrouter")], clock=clock, remaining_s=lambda: 5, metrics=metrics
        ).invoke("x")
    lim.try_acquire()
    assert lim.capacity("rpm") == 16 and metrics.learned == [("openrouter", "m", "rpm", 16)]


def test_429s_within_a_quiet_period_cut_only_the_exhausted_limit_and_only_once() -> None:
    # Sends that leave late (a loaded machine) can draw 429s at a limit the profile has right: cutting
    # by a tenth on each of them ratcheted openrouter's 24 rpm down to 5 in one batch.
    from stepgraph.providers.feedback import STRIKES, learn

    clock, store = FakeClock(), MemoryStore()
    lim = limiter(store, clock, [Limit("rpd", 1000, 86_400), Limit("tpm", 8000, 60, unit="tokens")])
    r = route(Script("groq"), lim, dialect="openai")
    refused = {**GROQ_HEADERS, "x-ratelimit-limit-tokens": "8000", "x-ratelimit-remaining-tokens": "0"}
    for _ in range(STRIKES - 1):
        assert learn(r, refused, now=clock.now(), rate_limited=True) == []
    assert learn(r, refused, now=clock.now(), rate_limited=True) == ["tpm=7200"]
    for _ in range(5):
        assert learn(r, refused, now=clock.now(), rate_limited=True) == []
    lim.try_acquire({"tpm": 1})
    assert lim.capacity("tpm") == 7200 and lim.capacity("rpd") == 1000  # rpd had room: not cut
    clock.advance(601)  # after a quiet period the profile applies and new 429s may cut once more
    lim.try_acquire({"tpm": 1})
    assert lim.capacity("tpm") == 8000
    for _ in range(STRIKES - 1):
        assert learn(r, refused, now=clock.now(), rate_limited=True) == []
    assert learn(r, refused, now=clock.now(), rate_limited=True) == ["tpm=7200"]


def test_a_lone_429_at_the_limit_in_force_lowers_nothing_a_pattern_from_any_workers_does() -> None:
    # A send that left late draws one 429 at a correct 24 rpm; a profile really too generous draws them
    # window after window, at whichever workers send.
    from stepgraph.providers.feedback import STRIKES, learn

    clock, store = FakeClock(), MemoryStore()
    profile = [Limit("rpm", 24, 30)]
    workers = [route(Script("openrouter"), limiter(store, clock, profile, key="openrouter:main"), dialect="openrouter")
               for _ in range(STRIKES)]  # fmt: skip

    def refused() -> dict[str, str]:
        reset = str(int((clock.now() + 5) * 1000))
        return {"X-RateLimit-Limit": "24", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}

    for w in workers:  # one 429 now and then, each more than STRIKES windows after the one before
        assert learn(w, refused(), now=clock.now(), rate_limited=True) == []
        clock.advance(STRIKES * 30 + 1)
    for w in workers[:-1]:  # then a pattern: one each window, at different workers
        assert learn(w, refused(), now=clock.now(), rate_limited=True) == []
        clock.advance(29)
    assert learn(workers[-1], refused(), now=clock.now(), rate_limited=True) == ["rpm=21"]
    workers[0].limiter.try_acquire()
    assert workers[0].limiter.capacity("rpm") == 21  # every worker paces by it


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(2, 12),
    lowered=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 12)), max_size=4),
    gaps=st.lists(st.floats(0, 3), min_size=20, max_size=120),
)
def test_no_window_ever_holds_more_than_the_limit_even_while_learned_limits_change(
    capacity: int, lowered: list[tuple[int, int]], gaps: list[float]
) -> None:
    clock, store = FakeClock(), MemoryStore()
    start = clock.now()
    limiters = [
        DynamoDBRateLimiter(
            "t",
            "k",
            [Limit("r", capacity, 10)],
            store=store,
            clock=clock,
            max_wait_s=2,
            learned_quiet_s=50,
            learned_refresh_s=0,
        )
        for _ in range(3)
    ]
    changes = sorted((start + at / 10, cap) for at, cap in lowered)
    sends: list[tuple[float, int]] = []  # (send time, the learned cap in force at the grant)
    for i, gap in enumerate(gaps):
        clock.advance(gap)
        while changes and changes[0][0] <= clock.now():
            limiters[0].learned.lower("r", changes.pop(0)[1], ceiling=capacity, reason="test")
        lim = limiters[i % 3]
        grant = lim.try_acquire()
        if grant.granted:
            sends.append((grant.send_at, lim.capacity("r")))
    times = sorted(t for t, _ in sends)
    for i, t in enumerate(times):
        in_window = [u for u in times[i:] if u < t + 10 - 1e-5]
        assert len(in_window) <= capacity  # the profile's limit holds in every window
    for t, cap in sends:  # and a steady learned limit holds a window after it took effect
        window = [u for u, c in sends if t <= u < t + 10 - 1e-5 and c == cap]
        assert len(window) <= cap + 1


# -- the shared circuit breaker -----------------------------------------------------------------------
def breaker(store: MemoryStore, clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        lambda: store, "down:main:m", clock, threshold=3, window_s=60, cooldown_s=30, probe_s=10, refresh_s=0
    )


def test_consecutive_failures_open_the_breaker_for_every_worker_and_a_probe_closes_it() -> None:
    clock, store = FakeClock(), MemoryStore()
    down = Script("down", *[http_error(502)] * 3)
    up = Script("up")
    r = ModelRouter(
        [route(down, breaker=breaker(store, clock)), route(up)], clock=clock, remaining_s=lambda: 60
    )
    for _ in range(4):  # each call: down fails once and up serves at once; the third failure opens it
        assert r.invoke("x").content == "ok from up"
        clock.advance(1)
    assert down.calls == 3
    # another worker (its own breaker object on the same table) skips it without an attempt
    other_down = Script("down")
    other = ModelRouter(
        [route(other_down, breaker=breaker(store, clock)), route(Script("up"))],
        clock=clock,
        remaining_s=lambda: 60,
    )
    for _ in range(3):
        assert other.invoke("x").content == "ok from up"
    assert other_down.calls == 0
    clock.advance(31)  # the cooldown is over: one half-open probe goes, and its success closes it
    probe = breaker(store, clock)
    assert probe.allow() and not breaker(store, clock).allow()  # one probe only
    probe.record_success()
    assert breaker(store, clock).status() == "closed"


def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock, store = FakeClock(), MemoryStore()
    b = breaker(store, clock)
    for _ in range(3):
        b.record_failure()
    assert b.status() == "open" and not b.allow()
    clock.advance(31)
    assert b.allow()
    assert b.record_failure() and b.status() == "open"


def test_a_breaker_open_alone_hands_the_call_to_the_next_entry_not_a_sleep() -> None:
    clock, store = FakeClock(), MemoryStore()
    b = breaker(store, clock)
    for _ in range(3):
        b.record_failure()
    solo = route(Script("down"), breaker=b)
    solo.pool = None
    with pytest.raises(Throttled) as info:
        ModelRouter([solo], clock=clock, remaining_s=lambda: 60).invoke("x")
    assert info.value.retry_after_s == pytest.approx(30, abs=1) and clock.now() == FakeClock().now()


def test_a_404_retires_the_deployment_for_the_run_for_every_worker() -> None:
    clock, store = FakeClock(), MemoryStore()
    gone = Script("gone", http_error(404, body={"error": {"message": "No endpoints found for m"}}))
    config = {"metadata": {"execution_id": "run-1"}}
    r = ModelRouter([route(gone, breaker=breaker(store, clock)), route(Script("up"))], clock=clock)
    assert r.invoke("x", config).content == "ok from up"
    later = Script("gone")
    other = ModelRouter([route(later, breaker=breaker(store, clock)), route(Script("up"))], clock=clock)
    assert other.invoke("x", config).content == "ok from up"
    assert later.calls == 0
    other.invoke("x", {"metadata": {"execution_id": "run-2"}})  # another run may use it
    assert later.calls == 1


def test_a_breaker_opened_by_the_last_member_throttles_the_step_instead_of_failing_it() -> None:
    clock, store = FakeClock(), MemoryStore()
    b = breaker(store, clock)
    b.record_failure()
    b.record_failure()  # another worker's two failures
    solo = route(Script("down", http_error(502)), breaker=b)
    with pytest.raises(Throttled) as info:
        ModelRouter([solo], clock=clock, remaining_s=lambda: 60).invoke("x")
    assert info.value.retry_after_s == pytest.approx(30)
