"""Benchmark: usage records through callback + ledger, and the report over 1,000,000 records."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import typer

from stepgraph.local.bench.records import bench_record
from stepgraph.local.bench.report import BenchResult, print_result


class _MemoryS3:
    def __init__(self) -> None:
        self.puts = 0

    def put_object(self, **_: Any) -> None:
        self.puts += 1


def _callback_rate(n: int) -> tuple[float, float]:
    """Records/s through UsageCallbackHandler + UsageLedger (one flush), and one PutObject per record."""
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, LLMResult

    from stepgraph.usage.callback import UsageCallbackHandler
    from stepgraph.usage.ledger import UsageLedger

    usage = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150, "cost": 0.0001}
    msg = AIMessage("x", response_metadata={"id": "gen-1", "model_name": "m", "token_usage": usage})
    result = LLMResult(generations=[[ChatGeneration(message=msg)]], llm_output={"token_usage": usage})
    meta = {"execution_id": "e", "item_id": "1", "node": "draft", "attempt": 1}

    def drive(per_record_put: bool) -> float:
        s3 = _MemoryS3()
        ledger = UsageLedger("b", execution_id="e", invocation_id="i", client=s3)
        cb = UsageCallbackHandler(ledger)
        start = time.perf_counter()
        for _ in range(n):
            rid = uuid.uuid4()
            cb.on_chat_model_start({}, [[]], run_id=rid, metadata=meta, invocation_params={"model": "m"})
            cb.on_llm_end(result, run_id=rid)
            if per_record_put:
                ledger.flush()
        ledger.flush()
        return n / (time.perf_counter() - start)

    return drive(False), drive(True)


def _write_dataset(root: Path, n: int) -> None:
    per_file = 100_000
    for f in range(0, n, per_file):
        day = f"2026-01-{1 + (f // per_file) % 28:02d}"
        d = root / "usage" / f"dt={day}" / "bench"
        d.mkdir(parents=True, exist_ok=True)
        with (d / f"{f}.jsonl").open("w") as out:
            for i in range(f, min(n, f + per_file)):
                ts = f"{day}T10:{i % 60:02d}:00.000000Z"
                # With the generation id and time to first token (unknown) as well.
                rec = bench_record(
                    i, ts, execution_id="e", generation_id="", ttft_ms=None, latency_ms=100 + i % 2000
                )
                out.write(json.dumps(rec) + "\n")


def _naive_report(root: Path) -> float:
    """Baseline: a Python loop over the JSONL computing spend per day and model."""
    start = time.perf_counter()
    totals: dict[tuple[str, str], float] = {}
    for path in root.rglob("*.jsonl"):
        with path.open() as f:
            for line in f:
                r = json.loads(line)
                k = (r["ts"][:10], r["model_used"])
                totals[k] = totals.get(k, 0.0) + (r["cost_usd"] or 0.0)
    return time.perf_counter() - start


def run(records: int = 1_000_000, callback_records: int = 20_000) -> BenchResult:
    from stepgraph.usage.report import run_report

    result = BenchResult(
        "usage", f"stepgraph bench usage --records {records} --callback-records {callback_records}"
    )
    ours, per_put = _callback_rate(callback_records)
    result.add(
        "callback + ledger", ours, "records/s", baseline=per_put, baseline_label="one PutObject per record"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_dataset(root, records)
        start = time.perf_counter()
        report = run_report(str(root))
        elapsed = time.perf_counter() - start
        one = time.perf_counter()
        run_report(str(root), queries=["spend_by_day_model"])
        single = time.perf_counter() - one
        naive = _naive_report(root)
    total = sum(r["requests"] for r in report["spend_by_day_model"])
    result.add("report, all 6 queries", elapsed, f"s over {total:,} records")
    result.add(
        "report, spend_by_day_model",
        single,
        "s",
        baseline=naive,
        baseline_label="Python json loop, one query",
    )
    result.notes.append(
        "DuckDB loads the JSONL once per report; the in-memory S3 stand-in isolates our own overhead."
    )
    return result


def cli(
    records: int = typer.Option(1_000_000, min=1000, help="Records in the report data set"),
    callback_records: int = typer.Option(20_000, min=100, help="Records pushed through the callback"),
) -> None:
    print_result(run(records, callback_records))
