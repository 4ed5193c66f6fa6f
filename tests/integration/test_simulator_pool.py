"""Several simulated providers at once over HTTP: each its own base URL, limits, dialect and faults."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from stepgraph.local.simulator import DEV_KEY, SimulatorHandle
from stepgraph.providers.waits import wait_hint_s

AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
POOL = {
    "openrouter": {"rpm": 20, "rpd": 50, "reported_limits": {"rpm": 3}},
    "groq": {"tpm": 1000},
    "cerebras": {"tpm": 2000},
    "ollama": {"max_concurrency": 1},
}


def chat(base_url: str, model: str, content: str = "hello", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(base_url + "/chat/completions", json=body, headers=AUTH, timeout=10)


@pytest.fixture
def pool(make_simulator: Any) -> SimulatorHandle:
    return make_simulator(providers=POOL, time_scale=0.05)


def test_each_provider_has_its_own_base_url_limits_and_dialect(pool: SimulatorHandle) -> None:
    openrouter, groq = pool.provider("openrouter"), pool.provider("groq")
    # OpenRouter enforces the lower limit it reports (3, documented 20), with headers on 429s only.
    statuses = [chat(openrouter.base_url, "openai/gpt-oss-120b:free") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert not any(k.lower().startswith("x-ratelimit") for k in statuses[0].headers)
    assert statuses[3].headers["X-RateLimit-Limit"] == "3"
    # Groq, on its own URL, still serves: its limits are its own; its headers come on every response.
    ok = chat(groq.openai_base_url, "openai/gpt-oss-120b", max_tokens=50)
    assert ok.status_code == 200 and "retry-after" not in ok.headers
    assert (
        ok.headers["x-ratelimit-limit-requests"] == "1000"
        and ok.headers["x-ratelimit-limit-tokens"] == "1000"
    )
    assert int(ok.headers["x-ratelimit-remaining-tokens"]) == 1000 - ok.json()["usage"]["total_tokens"]
    assert ok.json()["usage"]["cost"] == 0  # a free tier
    stats = pool.stats()["providers"]
    assert stats["openrouter"]["requests"] == 4 and stats["groq"]["requests"] == 1
    assert stats["openrouter"]["accounts"]["default"]["documented"]["rpm"] == 20
    assert stats["openrouter"]["accounts"]["default"]["rpm"] == 3
    assert stats["groq"]["header_dialect"] == "groq"
    assert httpx.get(pool.root_url + "/_sim/providers").json()["cerebras"] == {"header_dialect": "cerebras"}


def test_a_token_limited_provider_refuses_long_prompts_in_its_dialect(pool: SimulatorHandle) -> None:
    groq = pool.provider("groq")
    long_prompt = "word " * 600  # about 750 tokens against 1,000 tokens/min
    assert chat(groq.openai_base_url, "openai/gpt-oss-120b", long_prompt, max_tokens=100).status_code == 200
    refused = chat(groq.openai_base_url, "openai/gpt-oss-120b", long_prompt, max_tokens=100)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (
        error["code"] == "rate_limit_exceeded" and error["type"] == "tokens" and "(TPM)" in error["message"]
    )
    assert (
        int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining-tokens"] != "1000"
    )
    too_large = chat(groq.openai_base_url, "openai/gpt-oss-120b", "word " * 1000, max_tokens=100)
    assert too_large.status_code == 413  # larger than a whole minute's tokens: Groq's "Request too large"
    assert pool.provider("groq").stats()["accounts"]["default"]["token_window_violations"] == 0


def test_cerebras_reserves_input_plus_max_completion_tokens(pool: SimulatorHandle) -> None:
    cerebras = pool.provider("cerebras")
    # No max: it reserves the rest of the 65k context, more than its 2,000 tokens/min.
    unset = chat(cerebras.openai_base_url, "gpt-oss-120b")
    assert unset.status_code == 429 and unset.json()["code"] == "token_quota_exceeded"
    assert "retry-after" not in unset.headers and "x-ratelimit-reset-tokens-minute" in unset.headers
    ok = chat(cerebras.openai_base_url, "gpt-oss-120b", max_completion_tokens=900)
    assert ok.status_code == 200
    account = cerebras.stats()["accounts"]["default"]
    # The reservation stands, whatever the reply used: two such calls fill the minute.
    assert account["day_tokens"] == ok.json()["usage"]["prompt_tokens"] + 900
    assert chat(cerebras.openai_base_url, "gpt-oss-120b", max_completion_tokens=900).status_code == 200
    assert chat(cerebras.openai_base_url, "gpt-oss-120b", max_completion_tokens=900).status_code == 429


def test_a_provider_down_for_a_while_answers_5xx_or_drops_connections_then_recovers(
    pool: SimulatorHandle,
) -> None:
    groq, ollama = pool.provider("groq"), pool.provider("ollama")
    groq.go_down(1.0, status=503)
    down = chat(groq.openai_base_url, "openai/gpt-oss-120b", max_tokens=10)
    assert down.status_code == 503 and down.json()["error"]["type"] == "internal_server_error"
    client = ChatOpenAI(base_url=ollama.openai_base_url, api_key=DEV_KEY, model="gpt-oss:120b", max_retries=0)
    ollama.go_down(1.5, status="connection")
    with pytest.raises(httpx.TransportError):
        chat(ollama.openai_base_url, "gpt-oss:120b")
    with pytest.raises(openai.APIConnectionError):
        client.invoke("hi")
    time.sleep(1.6)
    assert chat(groq.openai_base_url, "openai/gpt-oss-120b", max_tokens=10).status_code == 200
    assert client.invoke("hi").content
    groq_stats, ollama_stats = groq.stats(), ollama.stats()
    assert groq_stats["errors_by_status"] == {"503": 1} and ollama_stats["errors_by_status"] == {
        "connection": 2
    }
    # Attempts on a provider that is down reach no account: they count against no limit.
    assert groq_stats["accounts"]["default"]["day_count"] == 1


def test_a_delisted_model_is_404_model_not_found(pool: SimulatorHandle) -> None:
    groq, openrouter = pool.provider("groq"), pool.provider("openrouter")
    groq.delist("openai/gpt-oss-120b")
    gone = chat(groq.openai_base_url, "openai/gpt-oss-120b")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
    openrouter.delist("openai/gpt-oss-120b:free")
    assert chat(openrouter.base_url, "openai/gpt-oss-120b:free").json()["error"]["message"] == (
        "No endpoints found for openai/gpt-oss-120b:free."
    )
    # A model the provider never served is not found either (OpenRouter alone says "not a valid model ID").
    assert chat(groq.openai_base_url, "gpt-oss:120b").status_code == 404


def test_the_router_reads_each_dialects_wait(pool: SimulatorHandle) -> None:
    """What the product reads from the simulator's 429s: Groq's retry-after, Cerebras' reset headers."""
    groq, cerebras = pool.provider("groq"), pool.provider("cerebras")
    for _ in range(2):
        last = chat(groq.openai_base_url, "openai/gpt-oss-120b", "word " * 600, max_tokens=100)
    assert last.status_code == 429
    exc = openai.RateLimitError("limited", response=last, body=last.json())
    assert wait_hint_s(exc, time.time()) == float(last.headers["retry-after"])
    for _ in range(3):  # 2,000 tokens/min, about 900 reserved a call
        refused = chat(cerebras.openai_base_url, "gpt-oss-120b", max_completion_tokens=900)
    assert refused.status_code == 429 and refused.headers["x-ratelimit-remaining-tokens-minute"] != "2000"
    exc = openai.RateLimitError("limited", response=refused, body=refused.json())
    wait = wait_hint_s(exc, time.time())
    assert wait == pytest.approx(float(refused.headers["x-ratelimit-reset-tokens-minute"]))
    assert 0 < wait <= 3  # the 3-s minute of time_scale 0.05, not the day


def test_outages_from_the_options_begin_mid_run(make_simulator: Any) -> None:
    sim = make_simulator(providers={"nvidia": {"down": [{"after_s": 0.5, "for_s": 60, "status": 502}]}})
    nvidia = sim.provider("nvidia")
    assert chat(nvidia.openai_base_url, "openai/gpt-oss-120b").status_code == 200
    time.sleep(0.6)
    assert chat(nvidia.openai_base_url, "openai/gpt-oss-120b").status_code == 502
    sim.reset()  # a reset restarts the outage schedule
    assert chat(nvidia.openai_base_url, "openai/gpt-oss-120b").status_code == 200


def test_a_pool_runs_in_its_own_process_behind_the_same_handle() -> None:
    from stepgraph.local.simulator import running_simulator

    with running_simulator(own_process=True, providers={"groq": {}, "ollama": {}}) as sim:
        assert sim.state is None
        groq = sim.provider("groq")
        assert chat(groq.openai_base_url, "openai/gpt-oss-120b", max_tokens=10).status_code == 200
        groq.go_down(30, status=503)
        assert chat(groq.openai_base_url, "openai/gpt-oss-120b").status_code == 503
        assert chat(sim.provider("ollama").openai_base_url, "gpt-oss:120b").status_code == 200
        assert set(sim.stats()["providers"]) == {"groq", "ollama"}


def test_queued_faults_answer_in_the_providers_dialect(make_simulator: Any) -> None:
    groq = make_simulator(header_dialect="groq")
    groq.queue_faults({"status": 429, "retry_after_s": 2}, {"status": 404})
    limited = chat(groq.openai_base_url, "openai/gpt-oss-120b")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert (
        limited.json()["error"]["code"] == "rate_limit_exceeded"
        and "x-ratelimit-limit-tokens" not in limited.headers
    )
    gone = chat(groq.openai_base_url, "openai/gpt-oss-120b")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
    openrouter = make_simulator()
    openrouter.queue_faults({"status": 404, "error_body": True})
    in_body = chat(openrouter.base_url, "openai/gpt-oss-120b:free")
    assert in_body.status_code == 200 and in_body.json()["error"]["code"] == 404
