"""Pools: the provider table's shape, validation, and capacity-aware routing across deployments
(fake chat models, an injected clock, the in-memory store: no sockets)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableLambda

from stepgraph.clock import FakeClock
from stepgraph.errors import ConfigError, InvalidInput
from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
from stepgraph.limiter.profiles import load_profile
from stepgraph.providers import Throttled
from stepgraph.providers.factory import build_chat_model
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.router import ModelRouter, Route
from stepgraph.providers.table import ModelSpec, load_provider_table
from stepgraph.runtime.validate import check_run_config
from stepgraph.schemas import RunConfig


class Fake:
    """A provider: records calls, answers with usage."""

    def __init__(self, name: str, usage: dict[str, int] | None = None) -> None:
        self.name, self.calls = name, 0
        self.usage = usage or {"prompt_tokens": 10, "completion_tokens": 5}

    def factory(self, key: str) -> Any:
        def call(messages: Any, config: Any = None, **kw: Any) -> AIMessage:
            self.calls += 1
            return AIMessage(f"from {self.name}", response_metadata={"token_usage": dict(self.usage)})

        return RunnableLambda(call)


def limiter(
    store: MemoryStore, clock: FakeClock, key: str, limits: list[Limit], **kw: Any
) -> DynamoDBRateLimiter:
    return DynamoDBRateLimiter(
        "t", key, limits, store=store, clock=clock, max_wait_s=kw.pop("max_wait_s", 1.0), **kw
    )


def member(fake: Fake, lim: Any, *, free: bool = True, pool: str = "pool:p", **kw: Any) -> Route:
    spec = ModelSpec(
        free=free, max_tokens=kw.pop("max_tokens", 100), usd_per_prompt_token=0 if free else 1e-6
    )
    return Route(
        fake.name, "m", spec, KeyRing(fake.name, [("main", "sk")]), fake.factory, lim, pool=pool, **kw
    )


def router(*routes: Route, clock: FakeClock, remaining: float = 30.0, **kw: Any) -> ModelRouter:
    return ModelRouter(list(routes), clock=clock, remaining_s=lambda: remaining, **kw)


# -- the table ------------------------------------------------------------------------------------
def test_the_builtin_table_has_a_pool_of_four_free_providers_with_dialects_and_profiles() -> None:
    table = load_provider_table(env={})
    deps = table.deployments("pool:gpt-oss-120b")
    assert [d.provider for d in deps] == ["openrouter", "groq", "cerebras", "ollama"]
    assert {d.name: d.limiter_key for d in deps}["groq:openai/gpt-oss-120b"] == "groq:main"
    assert table.providers["groq"].header_dialect == "openai"
    assert table.providers["openrouter"].header_dialect == "openrouter"
    assert table.providers["cerebras"].token_accounting == "reserved"
    assert table.providers["nvidia"].limits_profile == "nvidia-free"
    groq = {lim.name: lim for lim in load_profile("groq-free")}
    assert (groq["rpm"].capacity, groq["rpd"].capacity, groq["tpm"].capacity) == (30, 1000, 8000)
    assert groq["tpm"].unit == "tokens" and groq["tpd"].kind == "utc_day"
    assert {lim.name: lim.capacity for lim in load_profile("cerebras-free")}["tpd"] == 1_000_000


def test_a_chain_entry_may_name_a_pool_and_a_bad_pool_member_is_named() -> None:
    custom = {
        "providers": {
            "a": {"base_url": "http://a", "models": {"m": {"free": True}}},
            "b": {"base_url": "http://b", "models": {"m": {"free": True}}},
        },
        "pools": {"p": ["a:m", "b:m"]},
        "chain": ["pool:p"],
    }
    table = load_provider_table(json.dumps(custom), env={})
    assert [d.name for d in table.deployments("pool:p")] == ["a:m", "b:m"]
    bad = {**custom, "pools": {"p": ["a:m", "c:m"]}}
    with pytest.raises(ConfigError, match=r"pools\.p\[1\]: unknown pool or provider in 'c:m'"):
        load_provider_table(json.dumps(bad), env={})
    with pytest.raises(ConfigError, match=r"chain\.0: unknown pool or provider: no pool 'q'"):
        load_provider_table(json.dumps({**custom, "chain": ["pool:q"]}), env={})


def test_config_models_accepts_pools_and_models_and_names_a_bad_entry() -> None:
    table = load_provider_table(env={})
    check_run_config(
        RunConfig(models=["pool:gpt-oss-120b", "openrouter:openai/gpt-oss-120b"]), table, where="input.config"
    )
    with pytest.raises(InvalidInput, match=r"^input\.config\.models\[2\]: unknown pool or provider"):
        check_run_config(
            RunConfig(models=["pool:gpt-oss-120b", "gpt-oss:120b", "pool:nope"]), table, where="input.config"
        )
    with pytest.raises(InvalidInput, match=r"^input\.config\.models\[1\]: unknown pool or provider in 'x:y'"):
        check_run_config(RunConfig(models=["gpt-oss:120b", "x:y"]), table, where="input.config")


def test_a_provider_without_keys_is_left_out_of_its_pool_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = load_provider_table(env={})
    env = {"OPENROUTER_API_KEY": "sk-or", "CEREBRAS_API_KEY": "sk-c"}
    with caplog.at_level(logging.WARNING):
        model = build_chat_model(table, RunConfig(models=["pool:gpt-oss-120b"]), env=env)
        again = build_chat_model(table, RunConfig(models=["pool:gpt-oss-120b"]), env=env)
    assert [r.provider for r in model.routes] == ["openrouter", "cerebras"]
    assert [r.provider for r in again.routes] == ["openrouter", "cerebras"]
    warnings = [r.getMessage() for r in caplog.records if "left out of" in r.getMessage()]
    assert len([w for w in warnings if w.startswith("groq")]) == 1
    assert len([w for w in warnings if w.startswith("ollama")]) == 1
    assert all("sk-" not in w for w in warnings)


# -- routing ----------------------------------------------------------------------------------------
def test_a_full_deployment_does_not_throttle_the_step_when_another_can_send_now() -> None:
    clock, store = FakeClock(), MemoryStore()
    a, b = Fake("a"), Fake("b")
    lim_a = limiter(store, clock, "a", [Limit("rpm", 1, 60)])
    lim_b = limiter(store, clock, "b", [Limit("rpm", 1, 60)])
    r = router(member(a, lim_a), member(b, lim_b), clock=clock)
    assert r.invoke("x").content == "from a"
    start = clock.now()
    assert r.invoke("x").content == "from b"  # a is full for a minute: b serves at once
    assert clock.now() == start and (a.calls, b.calls) == (1, 1)
    with pytest.raises(Throttled) as info:
        r.invoke("x")  # both full: throttled for the soonest slot across the pool
    assert 55 < info.value.retry_after_s <= 60


def test_soonest_slot_wins_and_throttled_names_the_soonest_across_the_pool() -> None:
    clock, store = FakeClock(), MemoryStore()
    slow, fast = Fake("slow"), Fake("fast")
    lim_slow = limiter(store, clock, "slow", [Limit("rpm", 2, 60)], max_wait_s=40)
    lim_fast = limiter(store, clock, "fast", [Limit("rpm", 6, 60)], max_wait_s=40)
    r = router(member(slow, lim_slow), member(fast, lim_fast), clock=clock)
    for _ in range(3):
        r.invoke("x")
    # slow's next slot is 30 s away, fast's 10 s: the soonest serves
    assert fast.calls >= 2
    lim_slow.try_acquire(horizon=1000)
    lim_fast.try_acquire(horizon=1000)
    with pytest.raises(Throttled) as info:
        router(member(slow, lim_slow), member(fast, lim_fast), clock=clock, remaining=5).invoke("x")
    waits = [lim.peek()[0] for lim in (lim_slow, lim_fast)]
    assert info.value.retry_after_s == pytest.approx(min(waits) - 5, abs=0.5)


def test_free_before_paid_and_paid_only_when_allowed() -> None:
    clock, store = FakeClock(), MemoryStore()
    free, paid = Fake("free"), Fake("paid")
    lim_free = limiter(store, clock, "free", [Limit("rpm", 1, 60)], max_wait_s=5)
    routes = [member(paid, None, free=False), member(free, lim_free)]
    assert router(*routes, clock=clock).invoke("x").content == "from free"
    assert router(*routes, clock=clock).invoke("x").content == "from paid"  # free full beyond the horizon
    with pytest.raises(Throttled):
        router(*routes, clock=clock, allow_paid=False).invoke("x")


def test_ties_go_to_the_deployment_with_more_of_its_day_left() -> None:
    clock, store = FakeClock(), MemoryStore()
    a, b = Fake("a"), Fake("b")
    lim_a = limiter(store, clock, "a", [Limit("rpd", 10, 86_400, "utc_day")])
    lim_b = limiter(store, clock, "b", [Limit("rpd", 50, 86_400, "utc_day")])
    r = router(member(a, lim_a), member(b, lim_b), clock=clock)
    for _ in range(20):
        r.invoke("x")
    assert b.calls > a.calls and lim_a.used_today("rpd") + lim_b.used_today("rpd") == 20
    assert lim_b.used_today("rpd") - lim_a.used_today("rpd") <= 41  # spread, not one drained first


def test_a_refusal_the_cached_state_proves_costs_no_write() -> None:
    clock, store = FakeClock(), MemoryStore()
    fakes = [Fake(f"d{i}") for i in range(4)]
    lims = [limiter(store, clock, f"d{i}", [Limit("rpm", 1, 60)]) for i in range(4)]
    r = router(*(member(f, lim) for f, lim in zip(fakes, lims, strict=True)), clock=clock)
    for _ in range(4):
        r.invoke("x")
    writes = store.writes
    for _ in range(5):
        with pytest.raises(Throttled):
            r.invoke("x")
    assert store.writes == writes  # every deployment's refusal was proven by what it last read


class SlowWrites(MemoryStore):
    """Each conditional write takes `seconds` of the injected clock (a loaded DynamoDB)."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def apply(self, op: Any) -> Any:
        answer = super().apply(op)
        self.clock.advance(self.seconds)
        return answer


def test_a_send_that_leaves_late_after_its_slot_moves_the_deployments_schedule_back() -> None:
    clock = FakeClock()
    sends: list[float] = []
    fake = Fake("a")
    calls = fake.factory

    def timed(key: str) -> Any:
        llm = calls(key)
        return RunnableLambda(
            lambda messages, config=None, **kw: (sends.append(clock.now()), llm.invoke(messages))[1]
        )

    fake.factory = timed  # type: ignore[method-assign]
    lim = limiter(SlowWrites(clock, 1.0), clock, "a", [Limit("rpm", 6, 60)], max_wait_s=30.0, late_s=0.25)
    r = router(member(fake, lim), clock=clock)
    r.invoke("x")  # the idle window's slot is the write's start: its answer came back 1 s after it
    r.invoke("x")
    # 60 s / 6 from the first send as it really left, not from its slot (that would be 9 s)
    assert sends[1] - sends[0] == pytest.approx(10.0)


# -- token-aware admission ----------------------------------------------------------------------------
def test_tokens_are_reserved_from_the_prompt_and_max_tokens_then_reconciled_to_usage() -> None:
    clock, store = FakeClock(), MemoryStore()
    fake = Fake("g", usage={"prompt_tokens": 200, "completion_tokens": 50})
    lim = limiter(
        store, clock, "g", [Limit("rpm", 30, 60), Limit("tpm", 8000, 60, unit="tokens")], max_wait_s=0
    )
    r = router(member(fake, lim, max_tokens=1000), clock=clock)
    prompt = "w" * 3200  # about 800 tokens by the estimate
    r.invoke(prompt)
    # reserved 804 (3,200 characters and the message's 4) + 1000; reconciled to 250 reported: tat moved by
    # 250 tokens' worth, each paced over the window less that reservation (the newest request's room)
    tat = store.items["g#tpm"]["tat"]
    assert tat - clock.now() == pytest.approx(250 * 60 / (8000 - 1804), rel=0.01)


def test_a_long_prompt_waits_for_a_token_limited_deployment_and_another_serves() -> None:
    clock, store = FakeClock(), MemoryStore()
    groq, other = Fake("groq", usage={"prompt_tokens": 3000, "completion_tokens": 3500}), Fake("other")
    tpm = limiter(store, clock, "groq", [Limit("tpm", 8000, 60, unit="tokens")], max_wait_s=1)
    r = router(member(groq, tpm, max_tokens=4000), member(other, None), clock=clock)
    r.invoke("w" * 12_000)  # 3000 + 4000 tokens: groq takes it (it was idle)
    r.invoke("w" * 12_000)  # groq's minute is spent: without the token reservation it would overrun
    assert (groq.calls, other.calls) == (1, 1)


def test_a_provider_counting_max_completion_up_front_keeps_it_reserved() -> None:
    clock, store = FakeClock(), MemoryStore()
    fake = Fake("c", usage={"prompt_tokens": 200, "completion_tokens": 50})
    lim = limiter(store, clock, "c", [Limit("tpm", 60_000, 60, unit="tokens")], max_wait_s=0)
    router(member(fake, lim, max_tokens=1000, accounting="reserved"), clock=clock).invoke("w" * 3200)
    tat = store.items["c#tpm"]["tat"]
    # prompt 200 + max 1000 kept, paced over the window less the 1,804 reserved at admission
    assert tat - clock.now() == pytest.approx(1200 * 60 / (60_000 - 1804), rel=0.01)


def test_asking_a_contended_pool_of_four_stays_cheap_and_fills_it() -> None:
    # 50 workers against 40 grants/s split 16/12/8/4, in simulated time on the in-memory store (the
    # tight figures, <= 1.5 writes per grant, are `stepgraph bench limiter`'s; this is the loose floor).
    from stepgraph.local.bench.limiter import simulated

    writes_per_grant, utilization = simulated(50, 20.0, 40, 1.0, 1.0, 4)
    assert writes_per_grant <= 2.0 and utilization >= 0.9
