"""Benchmark: the usage report over S3 (httpfs in place vs download first) and a day raw vs compacted."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from stepgraph.local.bench.records import bench_record
from stepgraph.local.bench.report import BenchResult, print_result

BUCKET = "bench-lake"
DAY = "2026-01-01"


def objects(records: int, files: int, days: int = 1) -> Any:
    """(key, body) of `files` usage objects holding `records` records, spread over `days` days."""
    per = max(1, records // files)
    for f in range(files):
        day = f"2026-01-{1 + f % days:02d}"
        lines = []
        for i in range(f * per, (f + 1) * per):
            ts = f"{day}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}.000000Z"
            lines.append(json.dumps(bench_record(i, ts)))
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


def _log(mode: str, records: int, files: int, answer: dict[str, Any], peak_mb: float) -> None:
    """Each measurement as it ends (a long run cut short keeps what it measured)."""
    line = {"mode": mode, "records": records, "files": files, **answer, "peak_mb": round(peak_mb)}
    print(json.dumps(line), file=sys.stderr, flush=True)


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

    # One log line per request (hundreds of thousands here) would flood the bench's output and slow the server.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
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
            _log("s3-now", records, files, now, now_mb)
            today, today_mb = _child(["child", "today", endpoint])
            _log("s3-today", records, files, today, today_mb)
        finally:
            server.stop()
    label = f"{now['records']:,} records in {files:,} objects"
    _report_rows(result, f"report over S3, {label}", label, (now, now_mb), (today, today_mb),
                 ("download every object, then DuckDB defaults", "download, then DuckDB defaults"))  # fmt: skip
    if now["records"] != today["records"]:
        result.notes.append(f"record counts differ: {now['records']} vs {today['records']}")


def _dir_report(result: BenchResult, records: int, files: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for key, body in objects(records, files, days=7):
            (Path(tmp) / key).parent.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / key).write_bytes(body)
        now, now_mb = _child(["child", "dir-now", tmp])
        _log("dir-now", records, files, now, now_mb)
        today, today_mb = _child(["child", "dir-today", tmp])
        _log("dir-today", records, files, today, today_mb)
    label = f"{now['records']:,} records in {files:,} local files"
    baseline = "DuckDB defaults, in memory"
    _report_rows(result, f"report, {label}", label, (now, now_mb), (today, today_mb), (baseline, baseline))


def _report_rows(
    result: BenchResult,
    title: str,
    label: str,
    now: tuple[dict[str, Any], float],
    today: tuple[dict[str, Any], float],
    baselines: tuple[str, str],
) -> None:
    """The report's time and peak RSS beside the old way's (`today`), with the issue's goals."""
    result.add(title, now[0]["elapsed_s"], "s", baseline=today[0]["elapsed_s"], baseline_label=baselines[0],
               goal="<= 2x baseline")  # fmt: skip
    result.add(f"report peak RSS, {label}", now[1], "MB", baseline=today[1], baseline_label=baselines[1],
               goal="< 1024")  # fmt: skip


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


PARTS = ("compaction", "dir", "s3")


def parse_size(text: str) -> tuple[int, int]:
    """`RECORDS:FILES`, e.g. `100000:10000`."""
    records, sep, files = text.partition(":")
    try:
        size = int(records), int(files)
    except ValueError:
        size = (0, 0)
    if not sep or size[0] < size[1] or size[1] < 1:
        raise typer.BadParameter(
            f"{text!r}: give RECORDS:FILES with RECORDS >= FILES >= 1, e.g. 100000:10000"
        )
    return size


def run(
    records: int = 1_000_000,
    files: int = 100_000,
    attempts: int = 100_000,
    s3_sizes: tuple[tuple[int, int], ...] = ((100_000, 10_000),),
    parts: tuple[str, ...] = PARTS,
) -> BenchResult:
    s3_args = "".join(f" --s3 {r}:{f}" for r, f in s3_sizes)
    only = "".join(f" --part {p}" for p in parts) if tuple(parts) != PARTS else ""
    result = BenchResult(
        "lake",
        f"stepgraph bench lake --records {records} --files {files} --attempts {attempts}{s3_args}{only}",
    )
    if "compaction" in parts:
        _compaction(result, attempts)
    if "dir" in parts:
        _dir_report(result, records, files)
    if "s3" in parts:
        for s3_records, s3_files in s3_sizes:
            _s3_report(result, s3_records, s3_files)
    result.notes.append(
        "S3 is a moto server on loopback (each object read is an HTTP GET, as on S3, without S3's 10-30 ms). "
        "Each report runs alone in a fresh process; peak RSS is that process's (`os.wait4`). The baseline is "
        "the report before this work: DuckDB's defaults (a thread per core, insertion order kept, in memory), "
        "and on S3 every object downloaded first. The compacted query reads the day's Parquet and prunes its "
        "raw objects by their dt without opening them."
    )
    return result


def cli(
    records: int = typer.Option(1_000_000, min=1000, help="Records in the local report data set"),
    files: int = typer.Option(100_000, min=10, help="Files holding them"),
    attempts: int = typer.Option(100_000, min=100, help="Attempts (one object each) in the compacted day"),
    s3: list[str] = typer.Option(
        ["100000:10000"], "--s3", help="RECORDS:FILES of an S3 (moto server) report data set (repeat)"
    ),
    part: list[str] = typer.Option(list(PARTS), "--part", help=f"Parts to run (repeat): {', '.join(PARTS)}"),
) -> None:
    unknown = sorted(set(part) - set(PARTS))
    if unknown:
        raise typer.BadParameter(f"unknown part {', '.join(unknown)}; known: {', '.join(PARTS)}")
    print_result(run(records, files, attempts, tuple(parse_size(x) for x in s3), tuple(part)))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], sys.argv[3])
