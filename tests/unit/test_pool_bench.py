"""The pool bench's figures and the simulated pool's provider table, from made-up logs (no sockets)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from stepgraph.local.bench.pool import (
    after_breaker_opened,
    max_in_window,
    pooled_utilization,
    provider_capacity,
    window_violations,
)
from stepgraph.local.demo_pool import provider_rows, totals
from stepgraph.local.pool import SimProvider, provider_table, simulator_spec
from stepgraph.providers.table import load_provider_table


def stats(day_count: int = 0, day_tokens: int = 0, token_violations: int = 0) -> dict[str, Any]:
    account = {
        "day_count": day_count,
        "day_tokens": day_tokens,
        "token_window_violations": token_violations,
        "window_violations": 0,
        "max_in_window": 0,
    }
    return {"requests": day_count, "rate_limited": 0, "accounts": {"default": account}}


def test_max_in_window_slides() -> None:
    assert max_in_window([0, 1, 2, 10, 10.5], 5) == 3
    assert max_in_window([0, 5, 10], 5) == 1  # a window is half-open: t - 5 has left
    assert max_in_window([], 5) == 0


def test_capacity_is_the_tightest_limit() -> None:
    p = SimProvider("groq", rpm=30, rpd=1000, tpm=3000)
    # 10 windows: 300 by requests, 3000*10/200 = 150 by tokens (200 a request as counted), 1000 by the day.
    assert provider_capacity(p, stats(10, 2000), 100, 10) == pytest.approx(150)
    assert provider_capacity(SimProvider("nvidia", rpm=40, rpd=60), stats(), 100, 10) == 60
    # Counted at admission as prompt + max_tokens (700): a window holds 2300 tokens of 200-token
    # replies before it, 11 whole ones (a twelfth would leave no room), then that one: 12 a window.
    assert provider_capacity(p, stats(10, 2000), 100, 10, admitted_tokens=700) == pytest.approx(120)


def test_utilization_counts_admitted_requests_over_the_busy_part() -> None:
    p = SimProvider("nvidia", rpm=10)
    # 10 a window for 10 windows, then a trickle: the busy part is the first 80% of the requests.
    log = [{"ts": i * 1.0, "status": 200} for i in range(100)] + [{"ts": 200.0, "status": 200}]
    run = SimpleNamespace(provider_requests={"nvidia": log}, providers={"nvidia": stats(101)})
    used, span = pooled_utilization(run, (p,), 10.0)
    assert span == pytest.approx(79)
    assert used == pytest.approx(80 / (10 * 79 / 10))


def test_window_violations_count_every_request_sent_that_reached_an_account() -> None:
    p = SimProvider("openrouter", rpm=2)
    log = [
        {"ts": 0.0, "status": 200, "account": "default"},
        {"ts": 0.1, "status": 200, "account": "default"},
        {"ts": 0.2, "status": 429, "account": "default"},  # sent over the limit: a violation, 429 or not
        {"ts": 0.3, "status": 503, "account": None},  # the provider was down: counts against nothing
    ]
    run = SimpleNamespace(
        provider_requests={"openrouter": log}, providers={"openrouter": stats(token_violations=1)}
    )
    assert window_violations(run, (p,), 60.0) == 1 + 1


def test_breaker_cost_separates_probes_from_waste() -> None:
    fails = [0.0, 0.1, 0.2, 0.3, 0.5, 2.5, 3.3, 3.4, 6.5]  # opens at 0.2; cooldown 3 s
    log = [{"ts": t, "status": 503} for t in fails] + [{"ts": 9.9, "status": 200}]
    cost = after_breaker_opened(log, 3.0)
    assert (cost.probes, cost.in_flight, cost.late) == (2, 2, 2)  # probes 3.3 and 6.5; 0.3, 0.5; 2.5, 3.4
    assert after_breaker_opened(log[:2], 3.0).probes == 0


def test_the_simulated_pool_table_holds_each_member_to_the_simulators_numbers() -> None:
    providers = (SimProvider("groq", rpm=16, tpm=2400), SimProvider("nvidia", rpm=10, rpd=150))
    sim = SimpleNamespace(
        provider=lambda n: SimpleNamespace(
            base_url=f"http://x/{n}/api/v1", openai_base_url=f"http://x/{n}/v1"
        )
    )
    table = load_provider_table(__import__("json").dumps(provider_table(sim, providers)), env={})
    assert table.chain == ["pool:sim"]
    assert [d.name for d in table.deployments("pool:sim")] == [
        "groq:openai/gpt-oss-120b",
        "nvidia:openai/gpt-oss-120b",
    ]
    groq = table.providers["groq"]
    assert groq.base_url == "http://x/groq/v1" and groq.limit_overrides["tpm"]["capacity"] == 2400
    assert table.providers["nvidia"].limit_overrides["rpd"] == {
        "capacity": 150,
        "per_seconds": 86_400,
        "kind": "utc_day",
    }
    spec = simulator_spec(providers)
    assert spec["groq"]["tpm"] == 2400 and spec["nvidia"]["models"] == ["openai/gpt-oss-120b"]


def test_the_live_view_has_a_row_per_provider() -> None:
    from io import StringIO

    from rich.console import Console

    pool = {
        "providers": {"groq": {**stats(3), "ok": 3, "errors_by_status": {"503": 1}, "header_dialect": "groq"}}
    }
    pool["providers"]["groq"]["accounts"]["default"].update(
        rpm=30, tpm=8000, rpd=1000, max_tokens_in_window=900
    )
    out = StringIO()
    Console(file=out, width=160).print(provider_rows(pool))
    assert "groq" in out.getvalue() and "900 / 8,000" in out.getvalue() and "3 / 1,000" in out.getvalue()
    assert totals(pool)["requests"] == 3
