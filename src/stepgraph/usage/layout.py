"""The usage layout, read in one place: `usage/dt=YYYY-MM-DD/{execution}/{invocation}[-N].jsonl[.gz]`.

`stepgraph status` (spend so far, straight from S3), `stepgraph usage report` (files it loads into DuckDB)
and the tests read usage objects through these helpers, so a gzipped object (`STEPGRAPH_USAGE_GZIP`) or a
new suffix is handled everywhere or nowhere."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stepgraph import resources

SUFFIXES = (".jsonl", ".jsonl.gz")


def is_usage_object(name: str) -> bool:
    return name.endswith(SUFFIXES)


def execution_of(key: str) -> str | None:
    """The execution name in a usage key (`usage/dt=.../{execution}/...`), or None for another layout."""
    parts = key.removeprefix(resources.PREFIX_USAGE).split("/")
    return parts[1] if len(parts) == 3 and parts[0].startswith("dt=") else None


def decode(name: str, body: bytes) -> bytes:
    """The JSONL text of an object: gunzipped when its name says `.gz`."""
    return gzip.decompress(body) if name.endswith(".gz") else body


def lines(name: str, body: bytes) -> list[bytes]:
    return [line for line in decode(name, body).splitlines() if line.strip()]


def records(name: str, body: bytes) -> Iterator[dict[str, Any]]:
    for line in lines(name, body):
        yield json.loads(line)


def s3_keys(s3: Any, bucket: str, *, execution: str | None = None) -> list[str]:
    """Usage object keys in `bucket`, optionally those of one execution."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=resources.PREFIX_USAGE):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if is_usage_object(key) and (execution is None or execution_of(key) == execution):
                keys.append(key)
    return keys


def s3_records(s3: Any, bucket: str, *, execution: str | None = None) -> Iterator[dict[str, Any]]:
    for key in s3_keys(s3, bucket, execution=execution):
        yield from records(key, s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def local_files(root: Path) -> list[Path]:
    """Usage objects under a directory that holds (a copy of) the `usage/` prefix, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and is_usage_object(p.name))
