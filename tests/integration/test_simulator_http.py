"""The simulator over HTTP: every status code and header, limits, streaming, admin endpoints."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI

from stepgraph.config import load_settings
from stepgraph.local.simulator import DEV_KEY, DEV_MANAGEMENT_KEY, SimulatorHandle
from stepgraph.observability import MetricsEmitter
from stepgraph.providers.credits import poll_all

FREE = "openai/gpt-oss-120b:free"
PAID = "openai/gpt-oss-120b"
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}


def chat(sim: SimulatorHandle, content: str = "hello", model: str = FREE, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(sim.base_url + "/chat/completions", json=body, headers=AUTH, timeout=10)


def test_completion_has_usage_cost_and_generation_id(simulator: SimulatorHandle) -> None:
    resp = chat(simulator, "price me", model=PAID)
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"].startswith("gen-") and resp.headers["X-Generation-Id"] == body["id"]
    usage = body["usage"]
    assert usage["cost"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "cached_tokens" in usage["prompt_tokens_details"]
    assert "reasoning_tokens" in usage["completion_tokens_details"]
    gen = httpx.get(simulator.base_url + "/generation", params={"id": body["id"]}, headers=AUTH).json()[
        "data"
    ]
    assert gen["total_cost"] == usage["cost"] and gen["model"] == PAID
    free = chat(simulator, "free call").json()
    assert free["usage"]["cost"] == 0


def test_repeated_prompt_reports_cached_tokens(simulator: SimulatorHandle) -> None:
    first = chat(simulator, "same prompt " * 20).json()["usage"]
    second = chat(simulator, "same prompt " * 20).json()["usage"]
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    assert second["prompt_tokens_details"]["cached_tokens"] > 0


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        (
            {"Authorization": "Bearer sk-unknown"},
            {"model": FREE, "messages": [{"role": "user", "content": "x"}]},
            401,
        ),
        (AUTH, {"model": FREE}, 400),
        (AUTH, {"model": FREE, "messages": []}, 400),
        # As on OpenRouter: an unknown model ID is a 400 (a 404 means "no endpoint for this model").
        (AUTH, {"model": "no/such-model", "messages": [{"role": "user", "content": "x"}]}, 400),
        (AUTH, {"model": "sim/small-4k", "messages": [{"role": "user", "content": "y" * 20_000}]}, 400),
    ],
)
def test_client_errors(
    simulator: SimulatorHandle, headers: dict[str, str], body: dict[str, Any], status: int
) -> None:
    resp = httpx.post(simulator.base_url + "/chat/completions", json=body, headers=headers)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == status
    if status == 400 and "small-4k" in str(body):
        assert "maximum context length is 4096 tokens" in resp.json()["error"]["message"]
    if "no/such-model" in str(body):
        assert resp.json()["error"]["message"] == "no/such-model is not a valid model ID"


def test_malformed_json_is_400(simulator: SimulatorHandle) -> None:
    resp = httpx.post(simulator.base_url + "/chat/completions", content=b"{not json", headers=AUTH)
    assert resp.status_code == 400


def test_sliding_window_429_headers_and_recovery(make_simulator: Any) -> None:
    sim = make_simulator(rpm=3, rpd=1000, time_scale=0.02)  # window 1.2 s
    assert [chat(sim).status_code for _ in range(3)] == [200, 200, 200]
    limited = chat(sim)
    assert limited.status_code == 429
    h = limited.headers
    assert h["X-RateLimit-Limit"] == "3" and h["X-RateLimit-Remaining"] == "0"
    reset_s = int(h["X-RateLimit-Reset"]) / 1000
    assert 0 < reset_s - time.time() <= 1.3
    assert int(h["Retry-After"]) >= 1
    meta = limited.json()["error"]["metadata"]
    assert meta["headers"]["X-RateLimit-Reset"] == h["X-RateLimit-Reset"]
    time.sleep(max(0.0, reset_s - time.time()) + 0.05)
    assert chat(sim).status_code == 200
    stats = sim.stats()
    assert stats["rate_limited"] == 1 and stats["accounts"]["default"]["window_violations"] == 0
    assert stats["accounts"]["default"]["max_in_window"] == 3


def test_daily_limit_and_key_endpoint(make_simulator: Any) -> None:
    sim = make_simulator(rpm=100, rpd=2)
    assert chat(sim).status_code == 200 and chat(sim).status_code == 200
    resp = chat(sim)
    assert resp.status_code == 429 and resp.json()["error"]["metadata"]["limit_source"] == "day"
    reset_ms = int(resp.headers["X-RateLimit-Reset"])
    assert reset_ms % 86_400_000 == 0  # next UTC midnight
    data = httpx.get(sim.base_url + "/key", headers=AUTH).json()["data"]
    assert data["free_model_daily_requests"] == {"limit": 2, "remaining": 0, "used": 2}
    assert {"limit", "limit_remaining", "usage", "usage_daily", "is_free_tier"} <= set(data)
    assert "sk-" not in str(data)


def test_concurrency_limit(make_simulator: Any) -> None:
    sim = make_simulator(rpm=100, rpd=1000, max_concurrency=2, latency_ms=300)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: chat(sim).status_code, range(4)))
    assert codes.count(200) == 2 and codes.count(429) == 2
    assert sim.stats()["max_in_flight"] == 2


def test_credits_run_out_with_402_for_paid_only(make_simulator: Any) -> None:
    sim = make_simulator(rpm=100, credits_usd=0.0)
    assert chat(sim, model=PAID).status_code == 402
    assert chat(sim, model=FREE).status_code == 200


def test_key_is_uncapped_by_default_and_credits_need_a_management_key(make_simulator: Any) -> None:
    sim = make_simulator(rpm=100, credits_usd=12.0)
    assert chat(sim, model=PAID).status_code == 200
    key = httpx.get(sim.base_url + "/key", headers=AUTH).json()["data"]
    assert key["limit"] is None and key["limit_remaining"] is None  # the common, uncapped key
    assert key["usage"] > 0
    mgmt = {"Authorization": f"Bearer {DEV_MANAGEMENT_KEY}"}
    data = httpx.get(sim.base_url + "/credits", headers=mgmt).json()["data"]
    assert data == {"total_credits": 12.0, "total_usage": key["usage"]}
    assert httpx.get(sim.base_url + "/credits", headers=AUTH).status_code == 401  # an API key may not
    assert httpx.get(sim.base_url + "/credits").status_code == 401
    # ... and a management key makes no model calls.
    body = {"model": FREE, "messages": [{"role": "user", "content": "x"}]}
    assert httpx.post(sim.base_url + "/chat/completions", json=body, headers=mgmt).status_code == 401
    sim.revoke(DEV_MANAGEMENT_KEY)
    assert httpx.get(sim.base_url + "/credits", headers=mgmt).status_code == 401


def test_a_capped_key_reports_its_cap_and_stops_at_it(make_simulator: Any) -> None:
    probe = make_simulator(rpm=100)
    chat(probe, "paid", model=PAID)
    cost = httpx.get(probe.base_url + "/key", headers=AUTH).json()["data"]["usage"]
    cap = cost * 2.5  # two paid replies' worth
    spec = {"accounts": {"main": {"keys": {DEV_KEY: "dev"}, "credits_usd": 50.0, "key_limit_usd": cap}}}
    sim = make_simulator(rpm=100, accounts=spec)
    key = httpx.get(sim.base_url + "/key", headers=AUTH).json()["data"]
    assert key["limit"] == cap and key["limit_remaining"] == cap
    codes = [chat(sim, "paid", model=PAID).status_code for _ in range(4)]
    assert codes == [200, 200, 402, 402]  # over the key's cap long before the balance runs out
    after = httpx.get(sim.base_url + "/key", headers=AUTH).json()["data"]
    assert after["limit_remaining"] == pytest.approx(cap - 2 * cost)


def test_the_poller_reads_the_balance_of_an_uncapped_key_from_the_simulator(make_simulator: Any) -> None:
    sim = make_simulator(rpm=100, credits_usd=9.0)
    assert chat(sim, model=PAID).status_code == 200
    spent = httpx.get(sim.base_url + "/key", headers=AUTH).json()["data"]["usage"]
    env = {
        "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
        "OPENROUTER_API_KEY": DEV_KEY,
        "OPENROUTER_MANAGEMENT_KEY": DEV_MANAGEMENT_KEY,
    }
    emitter = MetricsEmitter()
    report = poll_all(load_settings(), emitter=emitter, env=env)
    assert report["openrouter:main"]["credits_remaining"] == pytest.approx(9.0 - spent)
    assert report["openrouter:main"]["credits_source"] == "credits"
    known = [v for m, v, d in emitter.emitted if m == "CreditsKnown" and set(d) == {"service"}]
    assert known == [1]
    without = poll_all(
        load_settings(), emitter=MetricsEmitter(), env={**env, "OPENROUTER_MANAGEMENT_KEY": ""}
    )
    assert without["openrouter:main"]["credits_remaining"] is None


def test_all_keys_of_an_account_share_limits_and_revoke(make_simulator: Any) -> None:
    spec = {"accounts": {"main": {"keys": {"sk-a": "a", "sk-b": "b"}, "rpm": 2}}}
    sim = make_simulator(accounts=spec)
    send = lambda key: httpx.post(  # noqa: E731
        sim.base_url + "/chat/completions",
        json={"model": FREE, "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert send("sk-a").status_code == 200 and send("sk-b").status_code == 200
    assert send("sk-a").status_code == 429  # the account's window is full, whichever key
    sim.revoke("sk-b")
    assert send("sk-b").status_code == 401
    labels = {r["key_label"] for r in sim.requests() if r["status"] != 401}
    assert labels == {"a", "b"} and "sk-a" not in str(sim.requests())


def test_queued_faults_and_failed_attempts_count(make_simulator: Any) -> None:
    sim = make_simulator(rpm=3, rpd=1000)
    sim.queue_faults(
        {"status": 502}, {"status": 503, "retry_after_s": 2}, {"status": 429, "retry_after_s": 1}
    )
    r502, r503, r429 = chat(sim), chat(sim), chat(sim)
    assert r502.status_code == 502
    assert r503.status_code == 503 and r503.headers["Retry-After"] == "2"
    assert (
        r429.status_code == 429
        and r429.json()["error"]["metadata"]["limit_source"] == "openrouter_shared_capacity"
    )
    assert chat(sim).status_code == 200
    assert chat(sim).status_code == 429  # 502 + 503 + 200 used the 3 slots: failed attempts count
    stats = sim.stats()
    assert stats["errors_by_status"] == {"502": 1, "503": 1, "429": 2}
    assert stats["requests"] == 5 and stats["ok"] == 1


def test_in_flight_budget_402_is_marked_transient(simulator: SimulatorHandle) -> None:
    simulator.queue_faults({"status": 402, "limit_source": "openrouter_in_flight_budget", "retry_after_s": 1})
    resp = chat(simulator)
    assert resp.status_code == 402 and resp.headers["Retry-After"] == "1"
    assert resp.json()["error"]["metadata"]["limit_source"] == "openrouter_in_flight_budget"


def test_random_fail_rate_is_seeded(make_simulator: Any) -> None:
    codes = []
    for _ in range(2):
        sim = make_simulator(rpm=1000, fail_rate=0.5, seed=7)
        codes.append([chat(sim).status_code for _ in range(12)])
    assert codes[0] == codes[1]
    assert {502, 503} & set(codes[0]) and 200 in codes[0]


def test_latency_injection(make_simulator: Any) -> None:
    sim = make_simulator(latency_ms=200)
    t = time.perf_counter()
    chat(sim)
    assert time.perf_counter() - t >= 0.2


def test_chatopenai_invoke_and_stream(simulator: SimulatorHandle) -> None:
    model = ChatOpenAI(model=PAID, base_url=simulator.base_url, api_key=DEV_KEY, max_retries=0)
    msg = model.invoke("Write a line\nsim-reply: forced text")
    assert msg.content == "forced text"
    assert msg.response_metadata["id"].startswith("gen-")
    assert msg.response_metadata["token_usage"]["cost"] > 0
    streamer = ChatOpenAI(
        model=PAID, base_url=simulator.base_url, api_key=DEV_KEY, max_retries=0, stream_usage=True
    )
    chunks = list(streamer.stream("stream me some words"))
    full = chunks[0]
    for c in chunks[1:]:
        full = full + c
    assert "stream me some words" in full.content
    assert full.usage_metadata and full.usage_metadata["output_tokens"] > 0


def test_stream_error_fault(simulator: SimulatorHandle) -> None:
    simulator.queue_faults({"stream_error": True})
    with httpx.stream(
        "POST",
        simulator.base_url + "/chat/completions",
        json={"model": FREE, "stream": True, "messages": [{"role": "user", "content": "a b c d"}]},
        headers=AUTH,
    ) as resp:
        text = resp.read().decode()
    assert resp.status_code == 200 and '"finish_reason": "error"' in text
    assert simulator.stats()["errors_by_status"] == {"stream_error": 1}


def test_ollama_style_base_url(simulator: SimulatorHandle) -> None:
    model = ChatOpenAI(
        model="gpt-oss:120b", base_url=simulator.ollama_base_url, api_key=DEV_KEY, max_retries=0
    )
    assert model.invoke("hi\nsim-reply: ok").content == "ok"


def test_reset_clears_counters(simulator: SimulatorHandle) -> None:
    chat(simulator)
    simulator.reset()
    assert simulator.stats()["requests"] == 0 and simulator.requests() == []


def test_the_simulator_runs_in_its_own_process_behind_the_same_handle() -> None:
    from stepgraph.local.simulator import running_simulator

    accounts = {"accounts": {"default": {"keys": {DEV_KEY: "own"}}}}
    with running_simulator(own_process=True, rpm=2, accounts=accounts) as sim:
        assert sim.state is None  # nothing shared with this process: every call goes over HTTP
        assert [chat(sim).status_code for _ in range(3)] == [200, 200, 429]
        stats = sim.stats()
        assert stats["requests"] == 3 and stats["rate_limited"] == 1
        assert [q["status"] for q in sim.requests()] == [200, 200, 429]
        sim.reset()
        assert sim.stats()["requests"] == 0
        url = sim.root_url
    with pytest.raises(httpx.HTTPError):  # stopped with the block, port released
        httpx.get(url + "/_sim/stats", timeout=2)
    # Bad options fail in the caller, not silently in the child.
    with pytest.raises(TypeError), running_simulator(own_process=True, no_such_option=1):
        pass
