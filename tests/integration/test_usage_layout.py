"""One reader of the usage layout: `stepgraph status` counts plain and gzipped usage objects alike, and
only those of its own execution."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stepgraph.usage import layout

BUCKET = "stepgraph-data"


def body(*costs: float) -> bytes:
    return "".join(json.dumps({"ts": "2026-03-01T00:00:00Z", "cost_usd": c}) + "\n" for c in costs).encode()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="m",
            definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/x",
        )["stateMachineArn"]
        yield {"s3": s3, "sfn": sfn, "arn": arn}


def test_the_s3_reader_takes_gzipped_usage_objects_of_its_execution_only(aws: dict[str, Any]) -> None:
    # `stepgraph status` now reads the run's counters (stepgraph.progress), not these objects; the reader
    # still serves `usage report --skip-bad-lines` and the tests that compare records with the simulator.
    s3 = aws["s3"]
    put = lambda key, data: s3.put_object(Bucket=BUCKET, Key=key, Body=data)  # noqa: E731
    put("usage/dt=2026-03-01/run-1/a.jsonl", body(0.5, 0.25))
    put("usage/dt=2026-03-01/run-1/b.jsonl.gz", gzip.compress(body(1.0)))  # STEPGRAPH_USAGE_GZIP=true
    put("usage/dt=2026-03-02/run-1/c-1.jsonl.gz", gzip.compress(body(2.0, 0.0)))
    put("usage/dt=2026-03-01/run-10/d.jsonl", body(100.0))  # another execution
    put("usage/dt=2026-03-01/run-1/notes.txt", b"not usage")
    records = list(layout.s3_records(s3, BUCKET, execution="run-1"))
    assert len(records) == 5 and sum(r["cost_usd"] for r in records) == 3.75
    assert layout.s3_keys(s3, BUCKET, execution="run-10") == ["usage/dt=2026-03-01/run-10/d.jsonl"]


def test_local_files_and_records_take_both_suffixes(tmp_path: Path) -> None:
    d = tmp_path / "usage" / "dt=2026-03-01" / "run-1"
    d.mkdir(parents=True)
    (d / "a.jsonl").write_bytes(body(1.0))
    (d / "b.jsonl.gz").write_bytes(gzip.compress(body(2.0)))
    (d / "c.json").write_bytes(body(4.0))
    files = layout.local_files(tmp_path / "usage")
    assert [f.name for f in files] == ["a.jsonl", "b.jsonl.gz"]
    costs = [r["cost_usd"] for f in files for r in layout.records(f.name, f.read_bytes())]
    assert costs == [1.0, 2.0]
    assert layout.execution_of("usage/dt=2026-03-01/run-1/a.jsonl") == "run-1"
    assert layout.execution_of("usage/other/a.jsonl") is None
