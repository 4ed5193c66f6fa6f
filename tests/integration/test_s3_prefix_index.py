"""The local stack's S3 prefix index: the same listings as moto's, reading only the matching keys."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from stepgraph.local.s3_index import prefix_index

# Dots stay inside names ("x.json"), never a whole path segment: "." and ".." segments are rewritten by
# the HTTP layer before S3 sees them, and no key of ours has one.
NAMES = st.text(alphabet="ab/-", min_size=1, max_size=6).map(lambda s: s.replace("b-", "b.-"))
COUNTER = itertools.count()
OPS = st.lists(st.tuples(st.sampled_from(["put", "put", "delete"]), NAMES), max_size=30)


def listing(s3: Any, bucket: str, prefix: str, delimiter: str | None) -> tuple[list[str], list[str]]:
    kw: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": 3}}
    if delimiter:
        kw["Delimiter"] = delimiter
    keys: list[str] = []
    folders: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(**kw):
        keys += [o["Key"] for o in page.get("Contents", [])]
        folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, folders


@pytest.fixture(scope="module")
def indexed_s3() -> Iterator[Any]:
    with mock_aws(), prefix_index():
        yield boto3.client("s3", region_name="us-east-1")


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=OPS, prefixes=st.lists(NAMES, min_size=1, max_size=4), versioned=st.booleans())
def test_indexed_listings_match_the_keys_that_exist(
    indexed_s3: Any, ops: list[tuple[str, str]], prefixes: list[str], versioned: bool
) -> None:
    s3, bucket = indexed_s3, f"bucket-{next(COUNTER)}"
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    model: set[str] = set()
    for i, (op, key) in enumerate(ops):
        if op == "put":
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
            model.add(key)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
            model.discard(key)
        if i % 7 == 0:  # listings between writes: the index must follow every write
            listing(s3, bucket, prefixes[0], None)
    for prefix in prefixes:
        expected = sorted(k for k in model if k.startswith(prefix))
        assert listing(s3, bucket, prefix, None) == (expected, [])
        keys, folders = listing(s3, bucket, prefix, "/")
        assert sorted(keys + folders) == sorted(
            {
                prefix + k[len(prefix) :].split("/")[0] + ("/" if "/" in k[len(prefix) :] else "")
                for k in expected
            }
        )


def test_a_prefix_listing_reads_only_the_keys_under_it(indexed_s3: Any) -> None:
    from moto.s3.utils import _VersionedKeyStore

    s3 = indexed_s3
    s3.create_bucket(Bucket="big-bucket")
    from moto.s3.models import s3_backends

    backend = s3_backends["123456789012"]["aws"]
    for i in range(3000):
        backend.put_object("big-bucket", f"usage/dt=2026-01-01/run/{i}.jsonl", b"{}")
    for i in range(5):
        s3.put_object(Bucket="big-bucket", Key=f"checkpoints/thread-7/{i}", Body=b"c")
    copies: list[int] = []
    original = _VersionedKeyStore._self_iterable

    def counted(self: Any) -> dict[str, Any]:
        copies.append(len(self))
        return original(self)

    _VersionedKeyStore._self_iterable = counted  # type: ignore[method-assign]
    try:
        keys = s3.list_objects_v2(Bucket="big-bucket", Prefix="checkpoints/thread-7/")["Contents"]
    finally:
        _VersionedKeyStore._self_iterable = original  # type: ignore[method-assign]
    assert len(keys) == 5
    assert copies == []  # moto's own path copies and scans all 3,005 keys
