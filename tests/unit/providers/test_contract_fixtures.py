"""The router, the usage callback and the credits poller against providers' real response shapes.

Each fixture in tests/fixtures/providers/ is replayed through an httpx transport given to the very
ChatOpenAI the product builds (no simulator in between): what the matrix decides, what the router does,
what the usage record says.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stepgraph import metrics as names
from stepgraph.clock import FakeClock
from stepgraph.config import load_settings
from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
from stepgraph.observability import MetricsEmitter
from stepgraph.providers import ProviderFatal, Throttled
from stepgraph.providers.credits import poll_all
from stepgraph.providers.errors import ModelUnavailable
from stepgraph.providers.factory import make_llm_factory
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.matrix import Action, classify
from stepgraph.providers.router import ModelRouter, Route, RunState, retry_after_s
from stepgraph.providers.table import ModelSpec, ProviderSpec, load_provider_table
from stepgraph.providers.waits import parse_duration, wait_hint_s
from stepgraph.usage.callback import UsageCallbackHandler
from stepgraph.usage.record import UsageRecord
from tests.fixtures.replay import Fixture, Replay, all_names, load

COMPLETIONS = [n for n in all_names() if "action" in load(n).expect]
# The fixtures' "now": 2025-12-01T12:00:00Z (the day-limit reset is the next UTC midnight).
NOW = 1_764_590_400.0


class Sink:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def add(self, record: UsageRecord) -> None:
        self.records.append(record)


def spec_for(fixture: Fixture, **model: Any) -> tuple[ProviderSpec, str]:
    name = fixture.request["model"]
    free = name.endswith(":free") or fixture.provider != "openrouter"
    spec = ProviderSpec(
        base_url=f"https://{fixture.provider}.example/api/v1",
        models={name: ModelSpec(free=free, stream=bool(fixture.request.get("stream")), **model)},
    )
    return spec, name


def replay_route(replay: Replay, fixture: Fixture, label: str = "", **model: Any) -> Route:
    spec, name = spec_for(fixture, **model)
    return Route(
        label or fixture.provider,
        name,
        spec.models[name],
        KeyRing(fixture.provider, [("main", "sk-test-main"), ("backup", "sk-test-backup")]),
        make_llm_factory(spec, name, http_client=replay.client()),
    )


def first_error(fixture: Fixture) -> BaseException:
    """What the product's chat model raises for this response."""
    replay = Replay.of(fixture)
    try:
        replay_route(replay, fixture).make_llm("sk-test").invoke("hi")
    except Exception as exc:
        return exc
    raise AssertionError(f"{fixture.name}: no error raised")


@pytest.mark.parametrize("name", COMPLETIONS)
def test_each_fixture_is_classified_as_it_expects(name: str) -> None:
    fixture = load(name)
    action = fixture.expect["action"]
    if action == "reply":
        replay = Replay.of(fixture)
        message = replay_route(replay, fixture).make_llm("sk-test").invoke("hi")
        assert message.response_metadata.get("finish_reason") == fixture.expect["finish_reason"]
        return
    decision = classify(first_error(fixture))
    assert decision.action is Action(action), f"{name}: {decision}"
    if "code" in fixture.expect:
        assert decision.failure is not None and decision.failure.status == fixture.expect["code"]


@pytest.mark.parametrize("name", [n for n in COMPLETIONS if load(n).expect["action"] == "wait"])
def test_the_wait_is_read_from_headers_or_body(name: str) -> None:
    fixture = load(name)
    exc = first_error(fixture)
    hint = wait_hint_s(exc, NOW)
    assert hint is not None, f"{name}: no wait found"
    if "reset_ms" in fixture.expect:
        assert hint == pytest.approx(fixture.expect["reset_ms"] / 1000 - NOW)
    else:
        assert hint == pytest.approx(fixture.expect["retry_after_s"])
    assert retry_after_s(exc, NOW) >= 1.0  # a reset already past is floored, never a 0-s loop


def router(*routes: Route, clock: FakeClock, remaining: float = 600.0, **kw: Any) -> ModelRouter:
    return ModelRouter(list(routes), clock=clock, remaining_s=lambda: remaining, **kw)


def test_context_overflow_in_the_real_wording_moves_to_the_next_model() -> None:
    overflow, ok = load("openrouter/context_overflow"), load("openrouter/ok")
    first, second = Replay.of(overflow), Replay.of(ok)
    r = router(replay_route(first, overflow, "a"), replay_route(second, ok, "b"), clock=FakeClock(NOW))
    assert r.invoke("hi").content == "A short summary."
    assert len(first.requests) == 1 and len(second.requests) == 1


def test_an_invalid_model_is_a_logged_skip_then_a_typed_stop(caplog: pytest.LogCaptureFixture) -> None:
    invalid, ok = load("openrouter/invalid_model"), load("openrouter/ok")
    state = RunState()
    r = router(
        replay_route(Replay.of(invalid), invalid, "a"),
        replay_route(Replay.of(ok), ok, "b"),
        clock=FakeClock(NOW),
        run_state=state,
    )
    assert r.invoke("hi").content == "A short summary."
    assert any("not a valid model ID" in e for e in state.events)
    assert "skipping to the next model" in caplog.text
    with pytest.raises(ModelUnavailable, match="not a valid model ID"):
        router(replay_route(Replay.of(invalid), invalid), clock=FakeClock(NOW)).invoke("hi")


def test_a_200_with_an_error_body_is_retried_like_its_code() -> None:
    error, ok = load("openrouter/error_in_200"), load("openrouter/ok")
    replay = Replay.of(error, ok)
    sink = Sink()
    r = router(
        replay_route(replay, error),
        clock=FakeClock(NOW),
        callbacks=[UsageCallbackHandler(sink)],
        base_delay_s=0,
    )
    assert r.invoke("hi").content == "A short summary."
    assert len(replay.requests) == 2
    assert [(x.status, x.http_status, x.error_type) for x in sink.records] == [
        ("error", 200, "ProviderBodyError"),
        ("ok", 200, ""),
    ]


def test_body_only_429_waits_what_the_body_says() -> None:
    limited, ok = load("openrouter/rate_limit_body_only"), load("openrouter/ok")
    clock = FakeClock(NOW)
    replay = Replay.of(limited, ok)
    assert router(replay_route(replay, limited), clock=clock).invoke("hi").content == "A short summary."
    assert clock.now() - NOW == pytest.approx(30)  # not the 1-s default


def test_a_past_reset_is_floored_and_the_waits_are_capped() -> None:
    past = load("openrouter/rate_limit_past_reset")
    clock = FakeClock(NOW)
    replay = Replay.of(past)
    with pytest.raises(Throttled):
        router(replay_route(replay, past), clock=clock, max_rate_waits=3).invoke("hi")
    assert len(replay.requests) == 4  # 1 try + 3 waits, then stop: not a loop until the step's time is gone
    assert clock.now() - NOW == pytest.approx(3.0)  # each wait floored to 1 s, none 0


def test_the_free_day_spent_by_the_provider_moves_to_the_paid_variant() -> None:
    day, paid = load("openrouter/rate_limit_free_day"), load("openrouter/ok_paid")
    free_replay, paid_replay = Replay.of(day), Replay.of(paid)
    state = RunState()
    r = router(
        replay_route(free_replay, day, "openrouter"),
        replay_route(paid_replay, paid, "openrouter"),
        clock=FakeClock(NOW),
        run_state=state,
    )
    assert r.invoke("hi").content == "A short summary."
    assert len(free_replay.requests) == 1 and len(paid_replay.requests) == 1 and state.fallbacks == 1


def test_in_flight_402_is_transient_with_an_attempt_cap() -> None:
    budget, ok = load("openrouter/in_flight_402"), load("openrouter/ok_paid")
    clock = FakeClock(NOW)
    assert router(replay_route(Replay.of(budget, ok), budget), clock=clock).invoke("hi").content
    assert clock.now() - NOW == pytest.approx(2)
    stuck = Replay.of(budget)
    with pytest.raises(Throttled):
        router(replay_route(stuck, budget), clock=FakeClock(NOW), max_rate_waits=2).invoke("hi")
    assert len(stuck.requests) == 3


@pytest.mark.parametrize(
    "name", ["openrouter/credits_402", "openrouter/key_limit_402", "openrouter/negative_balance_free_402"]
)
def test_402_variants_turn_paid_models_off(name: str) -> None:
    fixture, ok = load(name), load("openrouter/ok")
    state = RunState()
    r = router(
        replay_route(Replay.of(fixture), fixture, "a"),
        replay_route(Replay.of(ok), ok, "b"),
        clock=FakeClock(NOW),
        run_state=state,
    )
    assert r.invoke("hi").content == "A short summary." and state.paid_disabled


def test_403_moderation_is_fatal() -> None:
    flagged = load("openrouter/moderation_403")
    with pytest.raises(ProviderFatal, match="flagged"):
        router(replay_route(Replay.of(flagged), flagged), clock=FakeClock(NOW)).invoke("hi")


@pytest.mark.parametrize("name", ["openrouter/length", "openrouter/empty"])
def test_length_and_empty_replies_are_recorded_incomplete(name: str) -> None:
    fixture = load(name)
    sink = Sink()
    r = router(
        replay_route(Replay.of(fixture), fixture),
        clock=FakeClock(NOW),
        callbacks=[UsageCallbackHandler(sink)],
    )
    r.invoke("hi")
    (record,) = sink.records
    assert (
        record.status == fixture.expect["status"] and record.finish_reason == fixture.expect["finish_reason"]
    )
    assert record.prompt_tokens == 42  # still counted: the tokens were used


def test_a_length_reply_is_retried_with_a_larger_max_tokens_when_the_model_says_so() -> None:
    short, ok = load("openrouter/length"), load("openrouter/ok")
    replay = Replay.of(short, ok)
    sink = Sink()
    r = router(
        replay_route(replay, short, length_retry_max_tokens=8192),
        clock=FakeClock(NOW),
        callbacks=[UsageCallbackHandler(sink)],
    )
    assert r.invoke("hi").content == "A short summary."
    bodies = list(replay.bodies())
    # langchain-openai sends max_tokens as max_completion_tokens; every call carries the model's max_tokens (4096 by default).
    assert bodies[0]["max_completion_tokens"] == 4096 and bodies[1]["max_completion_tokens"] == 8192
    assert [x.status for x in sink.records] == ["incomplete", "ok"]


def test_streams_with_keep_alive_comments_keep_cost_id_and_reasoning() -> None:
    stream = load("openrouter/stream_ok")
    sink = Sink()
    r = router(
        replay_route(Replay.of(stream), stream), clock=FakeClock(NOW), callbacks=[UsageCallbackHandler(sink)]
    )
    assert r.invoke("hi").content == "A short summary."
    (record,) = sink.records
    assert record.generation_id.startswith("gen-") and record.cost_source == "provider"
    assert record.reasoning_tokens == 64 and record.streamed


def test_a_mid_stream_error_is_retried_and_recorded() -> None:
    bad, ok = load("openrouter/stream_error"), load("openrouter/stream_ok")
    sink = Sink()
    r = router(
        replay_route(Replay.of(bad, ok), bad),
        clock=FakeClock(NOW),
        callbacks=[UsageCallbackHandler(sink)],
        base_delay_s=0,
    )
    assert r.invoke("hi").content == "A short summary."
    assert [x.status for x in sink.records] == ["error", "ok"]


def test_groq_durations_and_headers_on_every_response() -> None:
    assert parse_duration("1m26.4s") == pytest.approx(86.4)
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("11.382867") == pytest.approx(11.382867)
    for name in ("groq/ok", "cerebras/ok"):
        assert any(h.lower().startswith("x-ratelimit-") for h in load(name).headers)


def test_the_paid_variant_has_its_own_deployment_without_the_free_caps() -> None:
    table = load_provider_table(env={})
    spec = table.providers["openrouter"]
    assert spec.deployment("openrouter", "openai/gpt-oss-120b:free") == ("openrouter:main", "openrouter-free")
    assert spec.deployment("openrouter", "openai/gpt-oss-120b") == (
        "openrouter:main:openai/gpt-oss-120b",
        "unlimited",
    )


def test_the_default_chain_serves_from_the_paid_variant_once_the_free_day_is_spent() -> None:
    """The free day counter is full (our limiter refuses until midnight): the paid route, with its own
    deployment and no platform cap, serves instead of the whole item waiting for the next UTC day."""
    clock = FakeClock(NOW)
    free_limiter = DynamoDBRateLimiter(
        "t", "openrouter:main", [Limit("rpd", 1, 86_400, "utc_day")], store=MemoryStore(), clock=clock
    )
    ok, paid = load("openrouter/ok"), load("openrouter/ok_paid")
    free_replay, paid_replay = Replay.of(ok), Replay.of(paid)
    free_route = replay_route(free_replay, ok, "openrouter")
    free_route.limiter = free_limiter
    r = router(free_route, replay_route(paid_replay, paid, "openrouter"), clock=clock)
    assert r.invoke("one").content == "A short summary."
    assert r.invoke("two").content == "A short summary."
    assert len(free_replay.requests) == 1 and len(paid_replay.requests) == 1


def test_the_credits_poller_reads_the_real_key_and_credits_shapes() -> None:
    key, credits = load("openrouter/key"), load("openrouter/credits")
    by_path = {"/api/v1/key": key, "/api/v1/credits": credits}
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return by_path[request.url.path].response(request)

    emitter = MetricsEmitter(enabled=False)
    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        report = poll_all(
            load_settings(),
            http=http,
            emitter=emitter,
            env={"OPENROUTER_API_KEY": "sk-or-test", "OPENROUTER_MANAGEMENT_KEY": "sk-or-mgmt-test"},
        )
    account = report["openrouter:main"]
    assert sorted(set(seen)) == ["/api/v1/credits", "/api/v1/key"]
    assert account["free_remaining"] == key.expect["free_remaining"]
    # The balance comes from /credits (total_credits - total_usage); the uncapped key's null limit is no balance.
    assert account["credits_remaining"] == pytest.approx(credits.expect["balance"])
    assert account["credits_source"] == "credits"


def test_incomplete_replies_are_a_metric_and_still_count_their_tokens() -> None:
    fixture = load("openrouter/length")
    sink = Sink()
    router(
        replay_route(Replay.of(fixture), fixture),
        clock=FakeClock(NOW),
        callbacks=[UsageCallbackHandler(sink)],
    ).invoke("hi")
    emitter = MetricsEmitter(enabled=False)
    emitter(sink.records[0])
    sent = {m: v for m, v, dims in emitter.emitted if set(dims) == {"service"}}
    assert sent[names.INCOMPLETE_REPLIES] == 1
    assert sent[names.PROMPT_TOKENS] == 42 and names.PROVIDER_ERRORS not in sent


@pytest.mark.parametrize("name", ["groq/ok", "cerebras/ok"])
def test_openai_dialect_replies_keep_their_headers_and_a_lower_limit_is_learned(name: str) -> None:
    """The very ChatOpenAI the product builds keeps an openai-dialect reply's headers; the router reads
    the limits they report, and one below the profile lowers the shared limit."""
    from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
    from stepgraph.providers.dialects import reply_headers, reported_limits

    fixture = load(name)
    replay = Replay.of(fixture)
    spec, model = spec_for(fixture)
    spec = spec.model_copy(update={"header_dialect": "openai"})
    message = make_llm_factory(spec, model, http_client=replay.client())("sk-test").invoke("hi")
    reported = reported_limits("openai", reply_headers(message), now=NOW)
    assert reported and all(v > 0 for v in reported.values())
    clock = FakeClock(NOW)
    profile = [
        Limit(n, 10 * v, 60, unit="tokens" if n.startswith("t") else "requests") for n, v in reported.items()
    ]
    lim = DynamoDBRateLimiter("t", "acct", profile, store=MemoryStore(), clock=clock, learned_refresh_s=0)
    route = Route(
        fixture.provider,
        model,
        spec.models[model],
        KeyRing("p", [("main", "sk")]),
        make_llm_factory(spec, model, http_client=Replay.of(fixture).client()),
        lim,
        dialect="openai",
    )
    ModelRouter([route], clock=clock).invoke("hi")
    lim.try_acquire()
    assert {n: lim.capacity(n) for n in reported} == reported
