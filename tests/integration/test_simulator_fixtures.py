"""The simulator answers like the contract fixtures (tests/fixtures/providers/): for each case the same
status, every field the real response has at the same place, and the rate-limit headers in the same
place (HTTP response or `error.metadata.headers`). A fixture the simulator does not produce is listed
with the reason, so a new fixture cannot be forgotten here."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from stepgraph.local.simulator import DEV_KEY, DEV_MANAGEMENT_KEY, SimulatorHandle
from tests.fixtures.replay import Fixture, all_names, load

FREE = "openai/gpt-oss-120b:free"
PAID = "openai/gpt-oss-120b"
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}

# How to make the simulator produce each case: (simulator options, faults to queue, request).
Provoke = tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]
CASES: dict[str, Provoke] = {
    "openrouter/ok": ({}, [], {"model": FREE}),
    "openrouter/ok_paid": ({}, [], {"model": PAID}),
    "openrouter/stream_ok": ({}, [], {"model": FREE, "stream": True}),
    "openrouter/stream_error": ({}, [{"stream_error": True}], {"model": FREE, "stream": True}),
    "openrouter/length": ({}, [], {"model": FREE, "max_tokens": 1, "content": "a long enough prompt " * 4}),
    "openrouter/empty": ({}, [], {"model": FREE, "content": "sim-reply: "}),
    "openrouter/error_in_200": ({}, [{"status": 502, "error_body": True}], {"model": FREE}),
    "openrouter/error_in_200_rate_limited": ({}, [{"status": 429, "error_body": True}], {"model": FREE}),
    "openrouter/context_overflow": ({}, [], {"model": "sim/small-4k", "content": "y" * 20_000}),
    "openrouter/invalid_model": ({}, [], {"model": "openai/gpt-oss-999b:free"}),
    "openrouter/no_endpoint": ({}, [{"status": 404}], {"model": FREE}),
    "openrouter/rate_limit_free_day": ({"rpd": 1}, [], {"model": FREE, "repeat": 2}),
    "openrouter/rate_limit_minute": ({"rpm": 1}, [], {"model": FREE, "repeat": 2}),
    "openrouter/rate_limit_shared_capacity": ({}, [{"status": 429}], {"model": FREE}),
    "openrouter/rate_limit_body_only": ({}, [{"status": 429, "body_headers_only": True}], {"model": FREE}),
    "openrouter/rate_limit_past_reset": ({}, [{"status": 429, "past_reset": True}], {"model": FREE}),
    "openrouter/credits_402": ({"credits_usd": 0.0}, [], {"model": PAID}),
    "openrouter/key_limit_402": (
        {"accounts": {"accounts": {"capped": {"keys": {DEV_KEY: "dev"}, "key_limit_usd": 0.0}}}},
        [],
        {"model": PAID},
    ),
    "openrouter/in_flight_402": (
        {},
        [{"status": 402, "limit_source": "openrouter_in_flight_budget", "retry_after_s": 2}],
        {"model": PAID},
    ),
    "openrouter/no_provider_503": ({}, [{"status": 503}], {"model": FREE}),
    "openrouter/bad_key_401": ({}, [], {"model": FREE, "key": "sk-unknown"}),
    "openrouter/models": ({}, [], {"method": "GET", "path": "/models"}),
    "openrouter/key": ({}, [], {"method": "GET", "path": "/key"}),
    "openrouter/credits": ({}, [], {"method": "GET", "path": "/credits", "key": DEV_MANAGEMENT_KEY}),
}
NOT_SIMULATED = {
    "openrouter/negative_balance_free_402": "the simulator never lets a balance go negative",
    "openrouter/moderation_403": "the simulator has no moderation",
    "groq/ok": "another provider's dialect (x-ratelimit-*-requests/-tokens); the pool adds --header-dialect",
    "groq/rate_limit": "another provider's dialect",
    "groq/rate_limit_no_retry_after": "another provider's dialect",
    "groq/context_overflow": "another provider's dialect",
    "cerebras/ok": "another provider's dialect",
    "cerebras/rate_limit": "another provider's dialect",
}
# Values that are free-form maps: their keys are compared apart (header placement) or not at all.
OPAQUE = {"error.metadata.headers", "error.metadata.raw", "error.metadata.flagged_input"}


def paths(obj: Any, prefix: str = "") -> set[str]:
    """Dotted field paths of a JSON value (a list's first element stands for all)."""
    if prefix in OPAQUE:
        return {prefix}
    if isinstance(obj, dict):
        out = {prefix} if prefix else set()
        for k, v in obj.items():
            out |= paths(v, f"{prefix}.{k}" if prefix else k)
        return out
    if isinstance(obj, list) and obj:
        return paths(obj[0], prefix + "[]")
    return {prefix} if prefix else set()


def ratelimit_names(headers: Any) -> set[str]:
    return {k.lower() for k in (headers or {}) if k.lower().startswith("x-ratelimit")}


def sse_data(text: str) -> tuple[list[str], list[Any]]:
    comments = [line for line in text.splitlines() if line.startswith(":")]
    data = [line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")]
    return comments, [d if d == "[DONE]" else json.loads(d) for d in data]


def provoke(make: Callable[..., SimulatorHandle], name: str) -> httpx.Response:
    options, faults, request = CASES[name]
    sim = make(**options)
    if faults:
        sim.queue_faults(*faults)
    if request.get("method") == "GET":
        auth = {"Authorization": f"Bearer {request.get('key', DEV_KEY)}"}
        return httpx.get(sim.base_url + request["path"], headers=auth, timeout=10)
    headers = {"Authorization": f"Bearer {request.get('key', DEV_KEY)}"}
    body = {
        "model": request["model"],
        "messages": [{"role": "user", "content": request.get("content", "hello")}],
        **{k: request[k] for k in ("stream", "max_tokens") if k in request},
    }
    for _ in range(request.get("repeat", 1)):
        resp = httpx.post(sim.base_url + "/chat/completions", json=body, headers=headers, timeout=10)
    return resp


def test_every_fixture_is_simulated_or_says_why_not() -> None:
    assert set(CASES) | set(NOT_SIMULATED) == set(all_names())
    assert not set(CASES) & set(NOT_SIMULATED)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_simulator_answers_like_the_fixture(
    make_simulator: Callable[..., SimulatorHandle], name: str
) -> None:
    fixture: Fixture = load(name)
    resp = provoke(make_simulator, name)
    assert resp.status_code == fixture.status, resp.text
    # Rate-limit headers where the real response has them: on the HTTP response, or only in the body.
    assert ratelimit_names(resp.headers) == ratelimit_names(fixture.headers)
    if fixture.sse is not None:
        want_comments, want = sse_data(fixture.sse)
        got_comments, got = sse_data(resp.text)
        assert want_comments[0] == got_comments[0] == ": OPENROUTER PROCESSING"
        assert (want[-1] == "[DONE]") == (got[-1] == "[DONE]")  # an error ends the stream without [DONE]
        chunks = [c for c in want if c != "[DONE]"]
        mine = [c for c in got if c != "[DONE]"]
        assert paths(chunks[-1]) <= paths(mine[-1])  # the usage chunk, or the error chunk
        # Content and reasoning deltas: every field the real chunks carry.
        assert set().union(*map(paths, chunks[:-1])) <= set().union(*map(paths, mine[:-1]))
        return
    body = resp.json()
    missing = paths(fixture.body) - paths(body)
    assert not missing, f"{name}: the simulator lacks {sorted(missing)}"
    want_inner = ((fixture.body or {}).get("error") or {}).get("metadata", {}).get("headers")
    got_inner = (body.get("error") or {}).get("metadata", {}).get("headers")
    assert set(want_inner or {}) == set(got_inner or {})
    if name == "openrouter/rate_limit_past_reset":
        assert int(resp.headers["X-RateLimit-Reset"]) / 1000 < __import__("time").time()
    if name == "openrouter/length":
        assert body["choices"][0]["finish_reason"] == "length"


def test_paid_models_are_not_held_to_the_free_caps_unless_configured(
    make_simulator: Callable[..., SimulatorHandle],
) -> None:
    def statuses(sim: SimulatorHandle, model: str) -> list[int]:
        body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
        return [
            httpx.post(sim.base_url + "/chat/completions", json=body, headers=AUTH, timeout=10).status_code
            for _ in range(3)
        ]

    sim = make_simulator(rpm=20, rpd=1)
    assert statuses(sim, FREE) == [200, 429, 429]
    assert statuses(sim, PAID) == [200, 200, 200]  # OpenRouter's paid variant has no platform cap
    strict = make_simulator(rpm=20, rpd=1, limit_paid=True)
    assert statuses(strict, PAID) == [200, 429, 429]
