"""Every athena/ query on DuckDB over a generated data set whose answers are computed here."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from stepgraph.cli import app
from stepgraph.usage import sql as usage_sql
from stepgraph.usage.athena_runner import run_athena
from stepgraph.usage.ledger import UsageLedger
from stepgraph.usage.record import UsageRecord
from stepgraph.usage.report import run_report
from tests.fixtures.aws import http_s3_client

MODELS = ["openai/gpt-oss-120b:free", "openai/gpt-oss-120b", "gpt-oss:120b"]


def make_records(n: int = 400, seed: int = 3) -> list[UsageRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        day = rng.choice(["2026-03-01", "2026-03-02"])
        model = rng.choice(MODELS)
        status = rng.choices(["ok", "rate_limited", "error"], [8, 1, 1])[0]
        ok = status == "ok"
        p, c = (rng.randint(10, 500), rng.randint(5, 200)) if ok else (0, 0)
        out.append(
            UsageRecord(
                ts=f"{day}T10:{rng.randint(0, 3):02d}:{rng.randint(0, 59):02d}.000000Z",
                execution_id=f"run-{i % 3}",
                item_id=str(i % 7),
                thread_id=f"t{i % 17}",
                graph=rng.choice(["document_pipeline", "fanout"]),
                node=rng.choice(["draft", "critique"]),
                provider="ollama" if model == "gpt-oss:120b" else "openrouter",
                model_requested=model,
                model_used=model if ok else "",
                status=status,
                http_status=200 if ok else (429 if status == "rate_limited" else 502),
                error_type="" if ok else "APIStatusError",
                prompt_tokens=p,
                completion_tokens=c,
                total_tokens=p + c,
                cost_usd=round((p * 1e-7 + c * 5e-7) if ok and ":free" not in model else 0.0, 9),
                is_free=model.endswith(":free"),
                latency_ms=rng.randint(50, 3000),
            )
        )
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[UsageRecord]]:
    root = tmp_path_factory.mktemp("usage-src")
    records = make_records()
    by_day: dict[str, list[UsageRecord]] = defaultdict(list)
    for r in records:
        by_day[r.dt].append(r)
    for day, recs in by_day.items():
        for part in range(2):  # several objects per day, one gzipped
            d = root / "usage" / f"dt={day}" / "run-1"
            d.mkdir(parents=True, exist_ok=True)
            body = "".join(r.model_dump_json() + "\n" for r in recs[part::2])
            if part:
                import gzip

                (d / f"inv{part}.jsonl.gz").write_bytes(gzip.compress(body.encode()))
            else:
                (d / f"inv{part}.jsonl").write_text(body)
    return root, records


@pytest.fixture(scope="module")
def report(dataset: tuple[Path, list[UsageRecord]]) -> dict[str, list[dict[str, Any]]]:
    return run_report(str(dataset[0]))


def model_of(r: UsageRecord) -> str:
    return r.model_used or r.model_requested


def test_every_query_runs(report: dict[str, list[dict[str, Any]]]) -> None:
    assert set(report) == set(usage_sql.named_queries())


def test_spend_by_day_model(report: dict, dataset: tuple) -> None:
    expected: dict[tuple, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    for r in dataset[1]:
        e = expected[(r.dt, model_of(r), r.graph, r.node)]
        e[0] += 1
        e[1] += r.total_tokens
        e[2] += r.cost_usd or 0
    got = {(row["dt"], row["model"], row["graph"], row["node"]): row for row in report["spend_by_day_model"]}
    assert set(got) == set(expected)
    for k, (n, tokens, cost) in expected.items():
        assert got[k]["requests"] == n and got[k]["total_tokens"] == tokens
        assert got[k]["cost_usd"] == pytest.approx(cost, abs=1e-6)


def test_requests_per_minute(report: dict, dataset: tuple) -> None:
    expected = Counter((r.ts[:16], r.provider) for r in dataset[1])
    limited = Counter((r.ts[:16], r.provider) for r in dataset[1] if r.status == "rate_limited")
    rows = report["requests_per_minute"]
    assert {(x["minute"], x["provider"]): x["requests"] for x in rows} == dict(expected)
    assert sum(x["rate_limited_429"] for x in rows) == sum(limited.values())


def test_latency_percentiles(report: dict, dataset: tuple) -> None:
    for row in report["latency_by_model"]:
        lat = sorted(r.latency_ms for r in dataset[1] if r.status == "ok" and model_of(r) == row["model"])
        assert row["requests"] == len(lat) and row["max_ms"] == lat[-1]
        assert lat[int(0.4 * len(lat))] <= row["p50_ms"] <= lat[int(0.6 * len(lat))]
        assert row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] <= lat[-1]


def test_top_cost_threads(report: dict, dataset: tuple) -> None:
    cost: dict[tuple, float] = defaultdict(float)
    for r in dataset[1]:
        cost[(r.thread_id, r.graph)] += r.cost_usd or 0
    top = report["top_cost_threads"]
    assert len(top) == min(20, len(cost))
    best = max(cost.values())
    assert top[0]["cost_usd"] == pytest.approx(best, abs=1e-6)


def test_failures_and_free_tier(report: dict, dataset: tuple) -> None:
    failures = Counter((r.status, r.http_status) for r in dataset[1] if r.status != "ok")
    got = Counter()
    for row in report["failures_by_status"]:
        got[(row["status"], row["http_status"])] += row["attempts"]
    assert got == failures
    free = Counter((r.dt, r.provider) for r in dataset[1] if r.is_free)
    rows = {(x["dt"], x["provider"]): x for x in report["free_tier_daily"]}
    assert {k: v["free_requests"] for k, v in rows.items()} == dict(free)
    for k, v in rows.items():
        assert v["remaining_of_1000"] == max(1000 - free[k], 0) and v["over_1000_by"] == max(
            free[k] - 1000, 0
        )
        assert v["remaining_of_50"] == max(50 - free[k], 0) and v["over_50_by"] == max(free[k] - 50, 0)
    assert any(free[k] > 50 for k in rows), "the data set should go over 50 on some day"


def test_cost_by_execution_with_the_aws_estimate_beside_it(dataset: tuple) -> None:
    expected: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0.0, set()])
    for r in dataset[1]:
        e = expected[r.execution_id]
        e[0] += 1
        e[1] += 0 if r.is_free else 1
        e[2] += r.cost_usd or 0
        e[3].add(r.item_id)
    res = CliRunner().invoke(
        app, ["usage", "report", "--source", str(dataset[0]), "--format", "json", "-q", "cost_by_execution"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["queries"]["cost_by_execution"]
    assert {r["execution_id"] for r in rows} == set(expected)
    for row in rows:
        n, paid, cost, items = expected[row["execution_id"]]
        assert (row["requests"], row["paid_requests"], row["items"]) == (n, paid, len(items))
        assert row["cost_usd"] == pytest.approx(cost, abs=1e-6)
        assert row["aws_estimate_usd"] > 0  # beside the provider spend, from the packaged price table
    assert [r["cost_usd"] for r in rows] == sorted((r["cost_usd"] for r in rows), reverse=True)


def test_since_filters_days(dataset: tuple) -> None:
    only = run_report(
        str(dataset[0]), queries=["spend_by_day_model"], since=__import__("datetime").date(2026, 3, 2)
    )
    assert {r["dt"] for r in only["spend_by_day_model"]} == {"2026-03-02"}


def test_cli_json_and_plot(dataset: tuple, tmp_path: Path) -> None:
    out = tmp_path / "usage.png"
    res = CliRunner().invoke(
        app,
        [
            "usage",
            "report",
            "--source",
            str(dataset[0] / "usage"),
            "--format",
            "json",
            "-q",
            "failures_by_status",
            "--plot",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # one document, loadable as a whole
    assert list(doc["queries"]) == ["failures_by_status"] and doc["queries"]["failures_by_status"]
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_report_reads_s3_in_place_through_httpfs(moto_server: str) -> None:
    s3 = http_s3_client(moto_server)
    bucket = "report-httpfs"
    s3.create_bucket(Bucket=bucket)
    with UsageLedger(bucket, execution_id="e", invocation_id="i", client=s3, gzip=True) as ledger:
        for r in make_records(30):
            ledger.add(r)
    with UsageLedger(bucket, execution_id="e", invocation_id="j", client=s3) as ledger:
        for r in make_records(12, seed=9):
            ledger.add(r)
    # The raw glob is one listing of *.jsonl*: an object that is neither .jsonl nor .jsonl.gz stays unread.
    s3.put_object(Bucket=bucket, Key="usage/dt=2026-03-01/e/i.jsonl.partial", Body=b"{not json")
    seen: list[str] = []
    s3.meta.events.register("before-send", lambda request, **_: seen.append(request.method))
    res = run_report(f"s3://{bucket}", queries=["failures_by_status", "spend_by_day_model"], s3_client=s3)
    assert sum(r["requests"] for r in res["spend_by_day_model"]) == 42
    assert "GET" not in seen  # DuckDB read the objects itself: boto3 downloaded nothing
    also = run_report(f"s3://{bucket}/usage/", queries=["spend_by_day_model"], s3_client=s3)
    assert also["spend_by_day_model"] == res["spend_by_day_model"]


def test_athena_runner_starts_polls_and_pages() -> None:
    import boto3

    client = boto3.client("athena", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "RUNNING"}}})
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}})
    header = {"Data": [{"VarCharValue": "status"}, {"VarCharValue": "attempts"}]}
    stub.add_response(
        "get_query_results",
        {
            "ResultSet": {"Rows": [header, {"Data": [{"VarCharValue": "error"}, {"VarCharValue": "3"}]}]},
            "NextToken": "n",
        },
    )
    stub.add_response(
        "get_query_results",
        {"ResultSet": {"Rows": [{"Data": [{"VarCharValue": "timeout"}, {"VarCharValue": "1"}]}]}},
    )
    with stub:
        res = run_athena(queries=["failures_by_status"], client=client, sleep=lambda s: None)
    assert res == {
        "failures_by_status": [{"status": "error", "attempts": "3"}, {"status": "timeout", "attempts": "1"}]
    }
