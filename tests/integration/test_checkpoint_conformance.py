"""LangGraph's checkpointer conformance suite against S3Saver on moto S3: every base and extended capability."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import boto3
import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from moto import mock_aws

from stepgraph.checkpoint import S3Saver


async def test_s3saver_passes_every_capability() -> None:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="conformance")
        counter = iter(range(10_000))

        @checkpointer_test(name="S3Saver")
        async def s3_saver() -> AsyncGenerator[S3Saver, None]:
            yield S3Saver("conformance", prefix=f"run{next(counter)}/", client=client)

        report = await validate(s3_saver)
    failures = {cap: res.failures for cap, res in report.results.items() if res.failures}
    assert not failures, failures
    assert {c.value for c in ALL_CAPABILITIES} <= {k for k, r in report.results.items() if r.detected}
    assert report.conformance_level() == "FULL"
    total = sum(r.tests_passed for r in report.results.values())
    skipped = sum(r.tests_skipped for r in report.results.values())
    assert total >= 70 and skipped == 0, (total, skipped)
    print(f"conformance: {total} tests passed over {len(report.results)} capabilities")


pytestmark = pytest.mark.timeout(240)
