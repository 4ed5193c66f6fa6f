"""Every row of the router's error matrix, with a fake chat model and an injected clock (no sockets)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from stepgraph.clock import FakeClock
from stepgraph.limiter import (
    BudgetExceeded,
    BudgetGuard,
    DynamoDBRateLimiter,
    Limit,
    LimiterUnavailable,
    MemoryStore,
)
from stepgraph.providers import AllModelsFailed, ProviderFatal, Throttled
from stepgraph.providers.keys import KeyRing, parse_keys
from stepgraph.providers.router import ModelRouter, Route, RunState
from stepgraph.providers.table import ModelSpec, load_provider_table


def http_error(
    status: int, headers: dict[str, str] | None = None, body: dict | None = None
) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://provider/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return openai.APIStatusError(f"HTTP {status}", response=response, body=body)


class Script:
    """A fake provider: each call pops the next outcome (an exception or reply text)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, Any]] = []

    def factory(self, key: str) -> Any:
        def call(messages: Any, config: Any = None, timeout: float | None = None) -> AIMessage:
            meta = dict((config or {}).get("metadata", {}))
            self.calls.append({"key": key, "meta": meta, "timeout": timeout})
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, AIMessage):
                return outcome
            return AIMessage(outcome, response_metadata={"token_usage": {"cost": 0.001}})

        return lambda key=key: RunnableLambda(call)


def route(
    script: Script,
    name: str = "m",
    *,
    free: bool = True,
    context: int = 1000,
    keys: Any = None,
    limiter: Any = None,
) -> Route:
    ring = keys or KeyRing("p", [("main", "sk-main")])
    return Route(
        "p",
        name,
        ModelSpec(free=free, context_tokens=context, usd_per_prompt_token=1e-6),
        ring,
        lambda key: script.factory(key)(),
        limiter,
    )


def router(*routes: Route, clock: FakeClock | None = None, remaining: float = 60.0, **kw: Any) -> ModelRouter:
    return ModelRouter(list(routes), clock=clock or FakeClock(), remaining_s=lambda: remaining, **kw)


def test_success_passes_attempt_metadata() -> None:
    s = Script("hello")
    assert router(route(s)).invoke("hi").content == "hello"
    expected = {"attempt": 1, "provider": "p", "key_label": "main", "model_requested": "m"}
    assert expected.items() <= s.calls[0]["meta"].items()


def test_429_waits_when_it_fits_then_retries_same_model() -> None:
    clock = FakeClock()
    s = Script(http_error(429, {"Retry-After": "3"}), "ok")
    assert router(route(s), clock=clock).invoke("x").content == "ok"
    assert clock.now() - FakeClock().now() == pytest.approx(3)
    assert [c["meta"]["attempt"] for c in s.calls] == [1, 2]


def test_429_uses_ratelimit_reset_and_throttles_beyond_the_budget() -> None:
    clock = FakeClock()
    reset_ms = str(int((clock.now() + 45) * 1000))
    s = Script(http_error(429, {"X-RateLimit-Reset": reset_ms, "Retry-After": "1"}))
    with pytest.raises(Throttled) as info:
        router(route(s), clock=clock, remaining=10).invoke("x")
    assert info.value.retry_after_s == pytest.approx(45, abs=0.01)


@pytest.mark.parametrize(
    "failure",
    [
        http_error(502),
        http_error(503, {"Retry-After": "1"}),
        http_error(408),
        openai.APITimeoutError(httpx.Request("POST", "http://p")),
    ],
)
def test_transient_errors_retry_then_fall_back(failure: BaseException) -> None:
    first, second = Script(failure, failure, failure), Script("from fallback")
    state = RunState()
    r = router(route(first, "a"), route(second, "b"), run_state=state)
    assert r.invoke("x").content == "from fallback"
    assert len(first.calls) == 3 and state.fallbacks == 1  # 1 try + 2 retries, then the next model
    assert second.calls[0]["meta"]["fallback"] is True


def test_an_error_event_inside_a_stream_is_retried() -> None:
    request = httpx.Request("POST", "http://p")
    s = Script(openai.APIError("simulated provider error mid-stream", request, body=None), "whole")
    assert router(route(s)).invoke("x").content == "whole"
    assert len(s.calls) == 2


def test_each_call_gets_at_most_the_step_budget_and_none_starts_without_one() -> None:
    s = Script("ok")
    assert router(route(s), remaining=7.5).invoke("x").content == "ok"
    assert s.calls[0]["timeout"] == 7.5  # a slow reply times out before the Lambda would be killed
    late = Script("never")
    with pytest.raises(Throttled):
        router(route(late), remaining=0.5).invoke("x")
    assert late.calls == []


def test_stream_finish_reason_error_is_retried() -> None:
    bad = AIMessage("half", response_metadata={"finish_reason": "error"})
    s = Script(bad, "whole")
    assert router(route(s)).invoke("x").content == "whole"


def test_context_too_long_goes_to_a_larger_model() -> None:
    small, big = Script(), Script("big model")
    assert (
        router(route(small, "small", context=10), route(big, "big", context=10_000)).invoke("y" * 400).content
        == "big model"
    )
    assert small.calls == []
    reported = Script(http_error(400, body={"error": {"message": "context_length_exceeded"}}))
    assert router(route(reported, "a"), route(Script("b"), "b")).invoke("x").content == "b"


def test_402_turns_paid_models_off_for_the_run() -> None:
    paid, free = Script(http_error(402)), Script("free answer", "free again")
    state = RunState()
    r = router(route(paid, "paid", free=False), route(free, "free"), run_state=state)
    assert r.invoke("x").content == "free answer"
    assert state.paid_disabled
    assert r.invoke("x").content == "free again" and len(paid.calls) == 1  # paid skipped now


def test_402_in_flight_budget_is_transient() -> None:
    err = http_error(
        402, {"Retry-After": "2"}, {"error": {"metadata": {"limit_source": "openrouter_in_flight_budget"}}}
    )
    s = Script(err, "ok")
    state = RunState()
    assert router(route(s, free=False), run_state=state).invoke("x").content == "ok"
    assert not state.paid_disabled


@pytest.mark.parametrize("status", [400, 403])
def test_client_errors_fail_fast_naming_provider_and_model(status: int) -> None:
    s, other = Script(http_error(status, body={"error": {"message": "bad"}})), Script("never")
    with pytest.raises(ProviderFatal, match=rf"p rejected m \(HTTP {status}\)"):
        router(route(s), route(other, "n")).invoke("x")
    assert other.calls == [] and len(s.calls) == 1


def test_401_rotates_to_the_next_key_then_fails_fast() -> None:
    ring = KeyRing("p", [("a", "sk-a"), ("b", "sk-b")])
    s = Script(http_error(401), "ok", http_error(401))
    r = router(route(s, keys=ring))
    assert r.invoke("x").content == "ok"
    assert [c["key"] for c in s.calls] == ["sk-a", "sk-b"]
    with pytest.raises(ProviderFatal, match="no usable API key left"):
        r.invoke("x")


def test_budget_exceeded_is_a_typed_stop() -> None:
    guard = BudgetGuard("t", "acct", daily_cap_usd=0.0001, store=MemoryStore(), clock=FakeClock())
    with pytest.raises(BudgetExceeded):
        router(route(Script("x"), free=False, context=10**6), budget_guard=guard).invoke("x" * 4000)


def test_limiter_refusal_beyond_the_budget_throttles_without_a_call() -> None:
    clock = FakeClock()
    limiter = DynamoDBRateLimiter(
        "t", "p", [Limit("rpm", 1, 60)], store=MemoryStore(), clock=clock, max_wait_s=5
    )
    s = Script("one", "two")
    r = router(route(s, limiter=limiter), clock=clock)
    assert r.invoke("x").content == "one"
    with pytest.raises(Throttled) as info:
        r.invoke("x")
    assert info.value.retry_after_s == pytest.approx(55) and len(s.calls) == 1


def test_the_chat_model_is_built_before_the_slot_so_the_send_leaves_at_its_slot() -> None:
    # A container's first client costs about a second of imports: built after the slot, the request
    # left that late and bunched into the provider's window with the on-time sends after it.
    clock = FakeClock()
    limiter = DynamoDBRateLimiter("t", "p", [Limit("rpm", 20, 60)], store=MemoryStore(), clock=clock)
    s = Script("one")
    slots: list[float] = []
    sent: list[float] = []
    acquire = limiter.try_acquire

    def reserve(*args: Any, **kwargs: Any) -> Any:
        grant = acquire(*args, **kwargs)
        slots.append(grant.send_at)
        return grant

    limiter.try_acquire = reserve  # type: ignore[method-assign]

    built: dict[str, Any] = {}

    def slow_build(key: str) -> Any:  # cached per key, as make_llm_factory's clients are
        if key not in built:
            clock.advance(1.0)  # the lazy imports of a first client
            inner = s.factory(key)()
            built[key] = RunnableLambda(
                lambda m, config=None, **kw: (sent.append(clock.now()), inner.invoke(m, config))[1]
            )
        return built[key]

    r = router(
        Route(
            "p",
            "m",
            ModelSpec(free=True, context_tokens=1000),
            KeyRing("p", [("main", "sk")]),
            slow_build,
            limiter,
        ),
        clock=clock,
    )
    assert r.invoke("x").content == "one"
    assert sent == pytest.approx(slots, abs=1e-6)


def test_a_slot_that_took_the_steps_time_ends_the_step_without_a_call() -> None:
    # A loaded DynamoDB can take seconds per write: a call started after that would get a spent
    # timeout (negative: the HTTP client refuses it) and the Lambda would be killed mid-call.
    clock = FakeClock()
    left = {"s": 3.0}

    class SlowLimiter(DynamoDBRateLimiter):
        def try_acquire(self, *args: Any, **kwargs: Any) -> Any:
            grant = super().try_acquire(*args, **kwargs)
            left["s"] -= 2.5  # the writes took 2.5 s of the step's 3
            return grant

    limiter = SlowLimiter("t", "p", [Limit("rpm", 20, 60)], store=MemoryStore(), clock=clock)
    s = Script("never sent")
    r = ModelRouter([route(s, limiter=limiter)], clock=clock, remaining_s=lambda: left["s"])
    with pytest.raises(Throttled, match="time budget"):
        r.invoke("x")
    assert s.calls == []


def test_a_failed_release_never_hides_a_paid_reply() -> None:
    class ReleaseFails(DynamoDBRateLimiter):
        def release(self, grant: Any) -> None:
            raise LimiterUnavailable("DynamoDB is down")

    clock = FakeClock()
    limiter = ReleaseFails("t", "p", [Limit("rpm", 5, 60)], store=MemoryStore(), clock=clock)
    s = Script("paid for")
    assert router(route(s, limiter=limiter), clock=clock).invoke("x").content == "paid for"
    assert len(s.calls) == 1


def test_all_models_failing_is_typed() -> None:
    with pytest.raises(AllModelsFailed):
        router(route(Script(http_error(404)), "a")).invoke("x")


def test_keys_are_labelled_and_never_shown() -> None:
    assert parse_keys("main=sk-or-1,backup=sk-or-2") == [("main", "sk-or-1"), ("backup", "sk-or-2")]
    assert parse_keys("sk-or-plain") == [("key1", "sk-or-plain")]
    assert "sk-or" not in repr(KeyRing("p", parse_keys("main=sk-or-1")))


def test_provider_table_and_overrides() -> None:
    table = load_provider_table(env={"STEPGRAPH_OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1"})
    assert table.providers["openrouter"].base_url == "http://127.0.0.1:9/api/v1"
    assert table.route("openrouter:openai/gpt-oss-120b:free") == ("openrouter", "openai/gpt-oss-120b:free")
    assert table.route("gpt-oss:120b") == ("ollama", "gpt-oss:120b")
    from stepgraph.errors import ConfigError

    with pytest.raises(ConfigError, match="is in no provider"):
        table.route("nope")
    with pytest.raises(ConfigError, match="neither JSON nor a file"):
        load_provider_table("not json", env={})


def test_a_stop_before_the_call_hands_the_limiter_lease_back() -> None:
    # The slot and the budget reservation are one context: a BudgetExceeded after the lease was taken
    # releases it (it used to stay held until it expired, blocking the account's next call).
    clock = FakeClock()
    limiter = DynamoDBRateLimiter(
        "t", "p", [Limit("conc", 1, 600, "concurrency")], store=MemoryStore(), clock=clock
    )
    guard = BudgetGuard("t", "acct", daily_cap_usd=0.0001, store=MemoryStore(), clock=clock)
    s = Script("x")
    with pytest.raises(BudgetExceeded):
        router(route(s, free=False, context=10**6, limiter=limiter), budget_guard=guard, clock=clock).invoke(
            "x" * 4000
        )
    assert s.calls == [] and limiter.try_acquire().granted
