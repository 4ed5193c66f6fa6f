"""Corrupt usage objects, row by row (a line not JSON, an array, a record without ts, a wrong type, truncated
gzip), in S3 and in a directory: `usage report` fails with one line naming the object and what to do,
reads only, and --skip-bad-lines counts every sound record."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import sys
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stepgraph.cli import main
from stepgraph.usage.record import UsageRecord
from tests.fixtures.aws import http_s3_client
from tests.fixtures.bad_input import DROP, drop, objects


def record(**changes: Any) -> str:
    base = UsageRecord(ts="2026-03-01T10:00:00Z", model_requested="m", prompt_tokens=10, cost_usd=0.001)
    base = base.model_dump(mode="json")
    return json.dumps(drop({**base, **changes}))


def lines(*bad: str) -> bytes:
    return "".join(line + "\n" for line in (record(), *bad)).encode()


USAGE_ROWS = [
    ("line not JSON", "inv.jsonl", lines("{not json"), r"line 2: not JSON \(Expecting property name"),
    ("line an array", "inv.jsonl", lines("[1, 2]"), "line 2: a JSON list, not an object"),
    ("record without ts", "inv.jsonl", lines(record(ts=DROP)), "line 2: missing field ts"),
    ("wrong type", "inv.jsonl", lines(record(prompt_tokens="many")), 'line 2: field prompt_tokens is "many", not bigint'),
    ("truncated gzip", "inv.jsonl.gz", gzip.compress(lines(record()))[:-12], "cannot be read"),
]  # fmt: skip


@pytest.mark.parametrize("where", ["s3", "dir"])
@pytest.mark.parametrize(("name", "body", "match"), [pytest.param(*r[1:], id=r[0]) for r in USAGE_ROWS])
def test_corrupt_usage_object(
    s3_client: Any, s3_bucket: str, moto_server: str, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str, name: str, body: bytes,
    match: str,
) -> None:  # fmt: skip
    # The report reads S3 through DuckDB's own HTTP client: S3 here is a moto server, not the in-process mock.
    store = http_s3_client(moto_server) if where == "s3" else s3_client
    if where == "s3":
        with contextlib.suppress(ClientError):
            store.create_bucket(Bucket=s3_bucket)
    root = tmp_path_factory.mktemp("runs [q1]")  # brackets: the name is text, not terminal markup
    good_key, bad_key = "usage/dt=2026-03-01/run-1/a.jsonl", f"usage/dt=2026-03-01/run-1/{name}"
    objs = {good_key: lines(record(), record()), bad_key: body}
    for key, data in objs.items():
        store.put_object(Bucket=s3_bucket, Key=key, Body=data)
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    source = f"s3://{s3_bucket}" if where == "s3" else str(root)
    before = objects(store, s3_bucket)
    monkeypatch.setenv("COLUMNS", "400")  # one line on stderr, unwrapped
    cmd = "usage report -q spend_by_day_model --format json --source"
    endpoint = ["--endpoint-url", moto_server] if where == "s3" else []
    monkeypatch.setattr(sys, "argv", ["stepgraph", *cmd.split(), source, *endpoint])
    with pytest.raises(SystemExit) as code:
        main()
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and "Traceback" not in err and "\n" not in err, err
    assert err.startswith(f"error: usage object {source}/{bad_key} "), err
    assert re.search(match, err) and "(move that object out of usage/" in err, err
    assert objects(store, s3_bucket) == before and (root / bad_key).read_bytes() == body  # only read
    # --skip-bad-lines reports the bad line and counts every sound record, the bad object's too.
    monkeypatch.setattr(sys, "argv", ["stepgraph", *cmd.split(), source, "--skip-bad-lines"])
    with pytest.raises(SystemExit) as code:
        main()
    captured = capsys.readouterr()
    sound = 3 + (0 if name.endswith(".gz") else 1)
    assert code.value.code == 0 and [
        r["requests"] for r in json.loads(captured.out)["queries"]["spend_by_day_model"]
    ] == [sound]
    assert (
        f"skipped: {source}/{bad_key}" in captured.err and "skipped 1 corrupt usage line(s)" in captured.err
    )
    monkeypatch.setattr(sys, "argv", ["stepgraph", *cmd.split(), source, *endpoint])
    # The rest is sound: without the bad object, the report counts the other records.
    store.delete_object(Bucket=s3_bucket, Key=bad_key)
    (root / bad_key).unlink()
    with pytest.raises(SystemExit) as code:
        main()
    out = json.loads(capsys.readouterr().out)
    assert code.value.code == 0 and [r["requests"] for r in out["queries"]["spend_by_day_model"]] == [3]
