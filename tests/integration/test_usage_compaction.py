"""Usage compaction keeps every record, never overwrites, runs twice to the same end, and the report
gives the same answers before and after it (on a directory, on moto S3 and through httpfs)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.usage.compact import CompactionError, compact, finished_days
from stepgraph.usage.lake import DirLake, S3Lake
from stepgraph.usage.ledger import UsageLedger
from stepgraph.usage.record import UsageRecord
from stepgraph.usage.report import run_report
from tests.fixtures.aws import http_s3_client
from tests.integration.test_usage_report import make_records

DAY_S = 86_400
NOW = 1_772_582_400.0  # 2026-03-04T00:00:00Z: 2026-03-01 and -02 have ended


def write_raw(root: Path, records: list[UsageRecord], objects: int = 7) -> None:
    for n in range(objects):
        part = records[n::objects]
        for day in sorted({r.dt for r in part}):
            body = "".join(r.model_dump_json() + "\n" for r in part if r.dt == day).encode()
            d = root / "usage" / f"dt={day}" / f"run-{n % 2}"
            d.mkdir(parents=True, exist_ok=True)
            if n % 3 == 0:
                (d / f"inv-{n}.jsonl.gz").write_bytes(gzip.compress(body))
            else:
                (d / f"inv-{n}.jsonl").write_bytes(body)


def parquet_ids(root: Path) -> list[str]:
    glob = str(root / resources.PREFIX_USAGE_COMPACTED / "dt=*" / "*.parquet")
    return sorted(r[0] for r in duckdb.sql(f"SELECT record_id FROM read_parquet('{glob}')").fetchall())


def same_report(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]]) -> None:
    """Equal row for row; sums of doubles may differ in the last rounded digit (addition order)."""
    assert a.keys() == b.keys()
    for query in a:
        assert len(a[query]) == len(b[query]), query
        for x, y in zip(a[query], b[query], strict=True):
            assert x.keys() == y.keys()
            for k in x:
                if isinstance(x[k], float):
                    assert x[k] == pytest.approx(y[k], abs=1.01e-6), (query, k, x, y)
                else:
                    assert x[k] == y[k], (query, k, x, y)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_compaction_keeps_every_record_and_the_report_gives_the_same_totals(tmp_path: Path) -> None:
    records = make_records(600, seed=11)
    write_raw(tmp_path, records)
    before = run_report(str(tmp_path))
    summary = compact(DirLake(tmp_path), now=NOW)
    assert [s["day"] for s in summary] == ["2026-03-01", "2026-03-02"]
    assert sum(s["records"] for s in summary) == len(records)
    assert parquet_ids(tmp_path) == sorted(r.record_id for r in records)
    after = run_report(str(tmp_path))
    same_report(after, before)
    # The report no longer reads the raw objects of compacted days (they wait for lifecycle to expire).
    next((tmp_path / "usage" / "dt=2026-03-01").rglob("*.jsonl")).write_text("not json\n")
    same_report(run_report(str(tmp_path)), before)
    # Sorted by ts within each object, ZSTD-compressed.
    for part in (tmp_path / resources.PREFIX_USAGE_COMPACTED).rglob("*.parquet"):
        ts = [r[0] for r in duckdb.sql(f"SELECT ts FROM read_parquet('{part}')").fetchall()]
        assert ts == sorted(ts)
        codecs = duckdb.sql(f"SELECT DISTINCT compression FROM parquet_metadata('{part}')").fetchall()
        assert codecs == [("ZSTD",)]


def test_a_second_run_writes_nothing_and_a_late_object_becomes_the_next_generation(tmp_path: Path) -> None:
    records = make_records(200, seed=5)
    write_raw(tmp_path, records)
    compact(DirLake(tmp_path), now=NOW)
    snapshot = files(tmp_path)
    again = compact(DirLake(tmp_path), now=NOW)
    assert all(s["skipped"] and not s["parts"] for s in again)
    assert files(tmp_path) == snapshot  # idempotent: nothing created, nothing changed
    late = UsageRecord(ts="2026-03-01T23:59:59.000000Z", thread_id="late", cost_usd=0.5)
    (tmp_path / "usage/dt=2026-03-01/run-9").mkdir()
    (tmp_path / "usage/dt=2026-03-01/run-9/late.jsonl").write_text(late.model_dump_json() + "\n")
    (third,) = [s for s in compact(DirLake(tmp_path), now=NOW) if s["parts"]]
    assert third["generation"] == 1 and third["records"] == 1
    assert parquet_ids(tmp_path) == sorted([r.record_id for r in records] + [late.record_id])
    assert all(files(tmp_path)[k] == v for k, v in snapshot.items())  # generation 0 untouched
    spend = run_report(str(tmp_path), queries=["spend_by_day_model"])["spend_by_day_model"]
    total = sum(r.cost_usd or 0 for r in records) + 0.5
    assert sum(r["cost_usd"] for r in spend) == pytest.approx(total, abs=1e-5)


def test_only_finished_days_are_compacted(tmp_path: Path) -> None:
    write_raw(tmp_path, make_records(50))
    lake = DirLake(tmp_path)
    assert finished_days(lake, now=NOW) == ["2026-03-01", "2026-03-02"]
    # Half an hour after 2026-03-02 ended, that day may still be flushing.
    assert finished_days(lake, now=NOW - DAY_S + 1800) == ["2026-03-01"]


def _s3_with_records(s3: Any, bucket: str, records: list[UsageRecord]) -> None:
    s3.create_bucket(Bucket=bucket)
    for n in range(5):
        with UsageLedger(
            bucket, execution_id=f"run-{n}", invocation_id="i", client=s3, gzip=n == 0
        ) as ledger:
            for r in records[n::5]:
                ledger.add(r)


def test_on_s3_compaction_never_overwrites_and_tags_what_it_verified(s3_client: Any) -> None:
    bucket = "lake"
    records = make_records(120, seed=2)
    _s3_with_records(s3_client, bucket, records)
    lake = S3Lake(bucket, s3_client)
    # A stray part from an interrupted run over other objects sits where generation 0 would go.
    stray = f"{resources.PREFIX_USAGE_COMPACTED}dt=2026-03-01/part-g000-00000.parquet"
    s3_client.put_object(Bucket=bucket, Key=stray, Body=b"not these records")
    with pytest.raises(CompactionError, match="do not hold the raw records"):
        compact(lake, days=["2026-03-01"])
    assert s3_client.get_object(Bucket=bucket, Key=stray)["Body"].read() == b"not these records"
    raw = lake.keys("usage/dt=2026-03-01/")
    tags = s3_client.get_object_tagging(Bucket=bucket, Key=raw[0])["TagSet"]
    assert tags == []  # nothing verified, nothing marked for expiry
    s3_client.delete_object(Bucket=bucket, Key=stray)
    summary = compact(lake, days=["2026-03-01", "2026-03-02"])
    assert sum(s["records"] for s in summary) == len(records)
    for key in lake.keys(resources.PREFIX_USAGE):
        tags = s3_client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        assert tags == [{"Key": resources.COMPACTED_TAG[0], "Value": resources.COMPACTED_TAG[1]}]
    manifest = json.loads(lake.get(f"{resources.PREFIX_USAGE_COMPACTED}dt=2026-03-01/_manifest-g000.json"))
    assert sorted(manifest["sources"]) == sorted(raw)
    keys = lake.keys("")
    assert all(s["skipped"] for s in compact(lake, days=["2026-03-01", "2026-03-02"]))
    assert lake.keys("") == keys


def test_the_report_over_s3_gives_the_same_totals_before_and_after_compaction(moto_server: str) -> None:
    s3 = http_s3_client(moto_server)
    bucket = "lake-httpfs"
    records = make_records(150, seed=8)
    _s3_with_records(s3, bucket, records)
    before = run_report(f"s3://{bucket}", s3_client=s3)
    compact(S3Lake(bucket, s3), now=NOW)
    assert any(k.endswith(".parquet") for k in S3Lake(bucket, s3).keys(resources.PREFIX_USAGE_COMPACTED))
    same_report(run_report(f"s3://{bucket}", s3_client=s3), before)


def test_usage_compact_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from stepgraph.cli import app

    write_raw(tmp_path, make_records(40))
    runner = CliRunner()
    res = runner.invoke(app, ["usage", "compact", "--source", str(tmp_path / "usage"), "--day", "2026-03-01"])
    assert res.exit_code == 0, res.output
    (line,) = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert line["day"] == "2026-03-01" and line["records"] > 0 and line["parts"]
    bad = runner.invoke(app, ["usage", "compact", "--source", str(tmp_path), "--day", "March"])
    assert isinstance(bad.exception, ConfigError) and "--day 'March' is not a date" in str(bad.exception)
