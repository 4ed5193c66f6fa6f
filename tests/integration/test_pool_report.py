"""The pool_utilization query on DuckDB over records of a pooled batch, answers computed here."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest

from stepgraph.usage.record import UsageRecord
from stepgraph.usage.report import run_report

DEPLOYMENTS = {  # deployment -> (provider, rpm, tpm)
    "openrouter:openai/gpt-oss-120b:free": ("openrouter", 20, None),
    "groq:openai/gpt-oss-120b": ("groq", 30, 8000),
    "cerebras:gpt-oss-120b": ("cerebras", 30, 60000),
}


def test_pool_utilization_per_deployment_and_minute_against_its_limits(tmp_path: Path) -> None:
    rng = random.Random(5)
    records = []
    for i in range(300):
        dep = rng.choice(list(DEPLOYMENTS))
        provider, rpm, tpm = DEPLOYMENTS[dep]
        learned = "rpm=16" if provider == "openrouter" and i % 2 else ""
        records.append(
            UsageRecord(
                ts=f"2026-03-01T10:0{rng.randint(0, 4)}:{rng.randint(0, 59):02d}.000000Z",
                provider=provider,
                account="main",
                deployment=dep,
                model_requested=dep.split(":", 1)[1],
                status=rng.choice(["ok", "ok", "rate_limited"]),
                total_tokens=rng.randint(10, 900),
                limit_rpm=16 if learned else rpm,
                limit_tpm=tpm,
                learned_limit=learned,
            )
        )
    out = tmp_path / "usage" / "dt=2026-03-01" / "run"
    out.mkdir(parents=True)
    (out / "a.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records))
    rows = run_report(str(tmp_path), queries=["pool_utilization"], since=date(2026, 3, 1))["pool_utilization"]
    expected: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, 0, 0, None])
    for r in records:
        e = expected[(r.ts[:16], r.deployment)]
        e[0] += 1
        e[1] += r.total_tokens
        e[2] = max(e[2], r.limit_rpm or 0)
        e[3] += r.status == "rate_limited"
        e[4] = r.limit_tpm
    got = {(row["minute"], row["deployment"]): row for row in rows}
    assert set(got) == set(expected)
    pooled: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (minute, _), (n, _, rpm, _, _) in expected.items():
        pooled[minute][0] += n
        pooled[minute][1] += rpm
    for key, (n, tokens, rpm, limited, tpm) in expected.items():
        row = got[key]
        assert (row["requests"], row["tokens"], row["limit_rpm"], row["rate_limited_429"]) == (
            n,
            tokens,
            rpm,
            limited,
        )
        assert row["rpm_utilization"] == pytest.approx(n / rpm)
        assert row["tpm_utilization"] == (pytest.approx(tokens / tpm) if tpm else None)
        assert row["pooled_rpm_share"] == pytest.approx(pooled[key[0]][0] / pooled[key[0]][1])
    assert any(row["learned_limit"] == "rpm=16" for row in rows)
