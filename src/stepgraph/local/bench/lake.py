"""Benchmark: the usage report over S3 (httpfs in place vs download first) and a day raw vs compacted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from stepgraph.local.bench.report import BenchResult, print_result

BUCKET = "bench-lake"
DAY = "2026-01-01"
_TEMPLATE: dict[str, Any] = {
    "schema_version": 1,
    "execution_id": "bench",
    "graph": "document_pipeline",
    "node": "draft",
    "attempt": 1,
    "provider": "openrouter",
    "key_label": "main",
    "status": "ok",
    "http_status": 200,
    "error_type": "",
    "prompt_tokens": 100,
    "completion_tokens": 50,
    "reasoning_tokens": 10,
    "cached_tokens": 0,
    "total_tokens": 150,
    "cost_usd": 0.0001,
    "cost_source": "provider",
    "is_free": False,
    "streamed": False,
    "latency_ms": 800,
    "limiter_wait_ms": 0,
    "fallback": False,
}
MODELS = ["openai/gpt-oss-120b:free", "openai/gpt-oss-120b", "gpt-oss:120b"]


def objects(records: int, files: int, days: int = 1) -> Any:
    """(key, body) of `files` usage objects holding `records` records, spread over `days` days."""
    per = max(1, records // files)
    for f in range(files):
        day = f"2026-01-{1 + f % days:02d}"
        lines = []
        for i in range(f * per, (f + 1) * per):
            m = MODELS[i % 3]
            rec = dict(
                _TEMPLATE,
                record_id=f"r{i}",
                ts=f"{day}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}.000000Z",
                item_id=str(i % 997),
                thread_id=f"t{i % 997}",
                model_requested=m,
                model_used=m,
            )
            lines.append(json.dumps(rec))
        yield f"usage/dt={day}/bench-{f % 50}/{f}.jsonl", ("\n".join(lines) + "\n").encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run `python -m stepgraph.local.bench.lake child ...` alone; its JSON answer and its peak RSS in MB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stepgraph.local.bench.lake", *args],
        stdout=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"bench child {args} failed ({proc.returncode})")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def _report_today(endpoint: str) -> dict[str, Any]:
    """What `usage report --source s3://…` did before httpfs: download every object, then DuckDB defaults."""
    s3 = _client(endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="usage/"):
            for obj in page.get("Contents", []):
                target = Path(tmp) / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(BUCKET, obj["Key"], str(target))
                files.append(str(target))
        return _defaults_report(files)


def _defaults_report(files: list[str]) -> dict[str, Any]:
    """The report as it ran before: an in-memory DuckDB with its default threads and insertion order."""
    import duckdb

    from stepgraph.usage import sql as usage_sql
    from stepgraph.usage.report import columns_sql, to_duckdb

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE usage_all AS SELECT * FROM read_json(?, format='newline_delimited', "
        f"columns={columns_sql()}, hive_partitioning=true, hive_types={{'dt': 'VARCHAR'}}, union_by_name=true)",
        [files],
    )
    rows = 0
    for q in usage_sql.named_queries().values():
        text = usage_sql.fill(q, database="memory", table="usage_all")
        rows += len(con.execute(to_duckdb(text.replace('"memory".', ""))).fetchall())
    total = con.execute("SELECT count(*) FROM usage_all").fetchone()
    return {"records": int(total[0]) if total else 0, "rows": rows}


def _report_now(endpoint: str) -> dict[str, Any]:
    from stepgraph.usage.report import run_report

    res = run_report(f"s3://{BUCKET}", s3_client=_client(endpoint))
    return {
        "records": sum(r["requests"] for r in res["spend_by_day_model"]),
        "rows": sum(map(len, res.values())),
    }


def _dir_now(root: str) -> dict[str, Any]:
    from stepgraph.usage.report import run_report

    res = run_report(root)
    return {
        "records": sum(r["requests"] for r in res["spend_by_day_model"]),
        "rows": sum(map(len, res.values())),
    }


def child(mode: str, where: str) -> None:
    start = time.perf_counter()
    run = {
        "now": _report_now,
        "today": _report_today,
        "dir-now": _dir_now,
        "dir-today": lambda root: _defaults_report(sorted(str(p) for p in Path(root).rglob("*.jsonl"))),
    }[mode]
    answer = run(where)
    print(json.dumps({**answer, "elapsed_s": time.perf_counter() - start}))


def _s3_report(result: BenchResult, records: int, files: int) -> None:
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    from stepgraph.local.s3_index import prefix_index

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    with prefix_index():
        server.start()
        try:
            endpoint = f"http://127.0.0.1:{port}"
            _client(endpoint).create_bucket(Bucket=BUCKET)
            backend = s3_backends["123456789012"]["aws"]
            for key, body in objects(records, files, days=7):
                backend.put_object(
                    BUCKET, key, body
                )  # straight into the server's store: setup is not measured
            now, now_mb = _child(["child", "now", endpoint])
            today, today_mb = _child(["child", "today", endpoint])
        finally:
            server.stop()
    label = f"{now['records']:,} records in {files:,} objects"
    result.add(
        f"report over S3, {label}", now["elapsed_s"], "s", baseline=today["elapsed_s"],
        baseline_label="download every object, then DuckDB defaults", goal="<= 2x baseline",
    )  # fmt: skip
    result.add(
        f"report peak RSS, {label}", now_mb, "MB", baseline=today_mb,
        baseline_label="download, then DuckDB defaults", goal="< 1024",
    )  # fmt: skip
    if now["records"] != today["records"]:
        result.notes.append(f"record counts differ: {now['records']} vs {today['records']}")


def _dir_report(result: BenchResult, records: int, files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for key, body in objects(records, files, days=7):
            (Path(tmp) / key).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / key).write_bytes(body)
        now, now_mb = _child(["child", "dir-now", tmp])
        today, today_mb = _child(["child", "dir-today", tmp])
    label = f"{now['records']:,} records in {files:,} local files"
    result.add(
        f"report, {label}", now["elapsed_s"], "s", baseline=today["elapsed_s"],
        baseline_label="DuckDB defaults, in memory", goal="<= 2x baseline",
    )  # fmt: skip
    result.add(
        f"report peak RSS, {label}", now_mb, "MB", baseline=today_mb,
        baseline_label="DuckDB defaults, in memory", goal="< 1024",
    )  # fmt: skip


def _compaction(result: BenchResult, attempts: int) -> None:
    import duckdb

    from stepgraph import resources
    from stepgraph.usage.compact import compact
    from stepgraph.usage.lake import DirLake
    from stepgraph.usage.report import run_report

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for key, body in objects(attempts, attempts):  # one object per attempt, as the ledger writes
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(body)
        query = ["spend_by_day_model"]
        start = time.perf_counter()
        raw = run_report(str(root), queries=query)
        raw_s = time.perf_counter() - start
        start = time.perf_counter()
        (summary,) = compact(DirLake(root), days=[DAY])
        compact_s = time.perf_counter() - start
        start = time.perf_counter()
        compacted = run_report(str(root), queries=query)
        compacted_s = time.perf_counter() - start
        parts = list((root / resources.PREFIX_USAGE_COMPACTED).rglob("*.parquet"))
        raw_bytes = sum(p.stat().st_size for p in (root / "usage").rglob("*.jsonl"))
        parquet_bytes = sum(p.stat().st_size for p in parts)
        ids = duckdb.sql(
            f"SELECT count(DISTINCT record_id) FROM read_parquet({[str(p) for p in parts]})"
        ).fetchone()
    same = [r["requests"] for r in raw["spend_by_day_model"]] == [
        r["requests"] for r in compacted["spend_by_day_model"]
    ]
    label = f"a day of {attempts:,} attempts"
    result.add(
        f"query spend_by_day_model, {label}, compacted", compacted_s, "s", baseline=raw_s,
        baseline_label=f"raw JSONL, {attempts:,} objects",
    )  # fmt: skip
    result.add(
        f"objects read, {label}, compacted",
        len(parts),
        "objects",
        baseline=attempts,
        baseline_label="raw JSONL",
    )
    result.add(
        f"bytes stored, {label}, compacted", parquet_bytes / 1e6, "MB", baseline=raw_bytes / 1e6,
        baseline_label="raw JSONL",
    )  # fmt: skip
    result.add(f"compaction time, {label}", compact_s, "s")
    result.add(f"records kept by compaction, {label}", summary["records"], "records", goal=f"= {attempts:,}")
    if not same or not ids or ids[0] != attempts:
        result.notes.append("compacted answers differ from raw")


def run(
    records: int = 1_000_000,
    files: int = 100_000,
    attempts: int = 100_000,
    s3_records: int = 100_000,
    s3_files: int = 5_000,
) -> BenchResult:
    result = BenchResult(
        "lake",
        f"stepgraph bench lake --records {records} --files {files} --attempts {attempts} "
        f"--s3-records {s3_records} --s3-files {s3_files}",
    )
    _compaction(result, attempts)
    _dir_report(result, records, files)
    _s3_report(result, s3_records, s3_files)
    result.notes.append(
        "S3 is a moto server on loopback (each object read is an HTTP GET, as on S3, without S3's 10-30 ms). "
        "Each report runs alone in a fresh process; peak RSS is that process's. The compacted query reads the "
        "day's Parquet and prunes its raw objects by their dt without opening them."
    )
    return result


def cli(
    records: int = typer.Option(1_000_000, min=1000, help="Records in the local report data set"),
    files: int = typer.Option(100_000, min=10, help="Files holding them"),
    attempts: int = typer.Option(100_000, min=100, help="Attempts (one object each) in the compacted day"),
    s3_records: int = typer.Option(100_000, min=100, help="Records in the S3 (moto server) report data set"),
    s3_files: int = typer.Option(5_000, min=10, help="Objects holding them"),
) -> None:
    print_result(run(records, files, attempts, s3_records, s3_files))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], sys.argv[3])
