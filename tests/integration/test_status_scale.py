"""`stepgraph status` at 10,000 items: a bounded number of requests, whatever the batch size."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from stepgraph import resources
from stepgraph.limiter.table import ensure_limiter_table
from stepgraph.progress import RunCounters
from stepgraph.run_status import status
from stepgraph.runtime.results import ResultStore
from stepgraph.usage.ledger import UsageLedger
from stepgraph.usage.record import UsageRecord
from tests.fixtures.dynamodb_local import ddb_client

ARN = "arn:aws:states:us-east-1:123456789012:execution:sm:big-run"
ITEMS, FAILED, ATTEMPTS_PER_ITEM, COST = 10_000, 120, 3, 0.000125
BUCKET, TABLE = "data", "limiter"


def _count_requests(client: Any, seen: Counter[str]) -> Any:
    client.meta.events.register("before-send", lambda request, **_: seen.update([request.url.split("?")[0]]))
    return client


def _stubbed_sfn(total: int, status_: str) -> tuple[Any, Stubber]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    stub = Stubber(sfn)
    inp = {"graph": "fanout", "items_s3": {"bucket": BUCKET, "key": "items/big.json"}}
    out = {"item_count": total, "items_s3": inp["items_s3"]}
    desc = {
        "executionArn": ARN,
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:sm",
        "status": status_,
        "startDate": "2026-01-01T00:00:00Z",
        "input": json.dumps(inp),
        "output": json.dumps(out) if status_ != "RUNNING" else None,
    }
    desc = {k: v for k, v in desc.items() if v is not None}
    map_run = "arn:aws:states:us-east-1:123456789012:mapRun:sm/big-run:abc"
    counts = {
        "pending": 0, "running": 0, "succeeded": total, "failed": 0, "timedOut": 0,
        "aborted": 0, "total": total, "resultsWritten": 0, "failuresNotRedrivable": 0,
        "pendingRedrive": 0,
    }  # fmt: skip
    stub.add_response("describe_execution", desc, {"executionArn": ARN})
    stub.add_response(
        "list_map_runs",
        {"mapRuns": [{"executionArn": ARN, "mapRunArn": map_run, "stateMachineArn": desc["stateMachineArn"],
                      "startDate": "2026-01-01T00:00:00Z"}]},
        {"executionArn": ARN, "maxResults": 1},
    )  # fmt: skip
    stub.add_response(
        "describe_map_run",
        {"mapRunArn": map_run, "executionArn": ARN, "status": "SUCCEEDED", "startDate": "2026-01-01T00:00:00Z",
         "maxConcurrency": 100, "toleratedFailurePercentage": 100.0, "toleratedFailureCount": 0,
         "itemCounts": counts, "executionCounts": counts},
        {"mapRunArn": map_run},
    )  # fmt: skip
    return sfn, stub


@pytest.fixture
def big_run() -> Any:
    """A finished Distributed Map run of 10,000 items: results, failure records, 30,000 usage objects."""
    with mock_aws():
        from moto.s3.models import s3_backends

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        backend = s3_backends["123456789012"]["aws"]
        put = lambda key, body: backend.put_object(BUCKET, key, body)  # noqa: E731 (no HTTP: fast)
        for i in range(ITEMS):
            if i < FAILED:
                record = {"item_id": i, "status": "failed", "error": "KeyError", "cause": "no text"}
                put(f"{resources.PREFIX_FAILURES}big-run/{i}.json", json.dumps(record).encode())
                continue
            put(f"{resources.PREFIX_RESULTS}big-run/{i}.json", b"{}")
            for a in range(ATTEMPTS_PER_ITEM):
                rec = UsageRecord(ts="2026-01-01T00:00:00Z", execution_id=ARN, cost_usd=COST)
                put(f"usage/dt=2026-01-01/big-run/{i}-{a}.jsonl", (rec.model_dump_json() + "\n").encode())
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ensure_limiter_table(ddb, TABLE)
        done = ITEMS - FAILED
        ddb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": "run#big-run"},
                "attempts": {"N": str(done * ATTEMPTS_PER_ITEM)},
                "cost_nanos": {"N": str(round(done * ATTEMPTS_PER_ITEM * COST * 1e9))},
                "items_done": {"N": str(done)},
            },
        )
        yield s3, ddb


def test_status_of_a_10000_item_run_makes_a_bounded_number_of_requests(big_run: Any) -> None:
    s3, ddb = big_run
    seen: Counter[str] = Counter()
    sfn, stub = _stubbed_sfn(ITEMS, "SUCCEEDED")
    with stub:
        report = status(
            ARN,
            table=TABLE,
            failures_limit=20,
            clients={
                "stepfunctions": sfn,
                "s3": _count_requests(s3, seen),
                "dynamodb": _count_requests(ddb, seen),
            },
        )
    stub.assert_no_pending_responses()
    done = ITEMS - FAILED
    assert report["items_done"] == done and report["failed_count"] == FAILED
    assert report["unaccounted"] == 0 and report["map_run"]["total"] == ITEMS
    assert report["provider_attempts"] == done * ATTEMPTS_PER_ITEM
    assert report["spend_usd"] == pytest.approx(done * ATTEMPTS_PER_ITEM * COST)
    assert [f["item_id"] for f in report["failed_items"]] == sorted(
        f["item_id"] for f in report["failed_items"]
    )
    assert len(report["failed_items"]) == 20 and report["failed_items_more"] == FAILED - 20
    # One counter read, one listing page of failures and 20 failure records: nothing per attempt or per item.
    assert sum(seen.values()) <= 25, seen
    assert not any("/usage/" in url or "/results/" in url for url in seen), seen


def test_polling_status_downloads_nothing(big_run: Any) -> None:
    s3, ddb = big_run
    seen: Counter[str] = Counter()
    sfn, stub = _stubbed_sfn(ITEMS, "RUNNING")
    with stub:
        report = status(
            ARN, table=TABLE, failures_limit=0,
            clients={"stepfunctions": sfn, "s3": _count_requests(s3, seen), "dynamodb": _count_requests(ddb, seen)},
        )  # fmt: skip
    assert report["status"] == "RUNNING" and "unaccounted" not in report
    assert report["failed_items"] == [] and report["failed_count"] == FAILED
    assert sum(seen.values()) <= 2, seen  # the counter item and one listing page


def test_counters_follow_every_attempt_and_each_item_once_under_concurrency(
    limiter_table: tuple[str, str], s3_client: Any, s3_bucket: str
) -> None:
    endpoint, table = limiter_table
    ddb = ddb_client(endpoint)
    arn = "arn:aws:states:us-east-1:123456789012:execution:sm:counted"
    counters = RunCounters(table, arn, client=ddb)

    def writer(n: int) -> None:
        ledger = UsageLedger(s3_bucket, execution_id=arn, invocation_id=f"inv-{n}", client=s3_client,
                             listeners=[RunCounters(table, arn, client=ddb_client(endpoint))])  # fmt: skip
        for _ in range(25):
            ledger.add(UsageRecord(ts="2026-01-01T00:00:00Z", execution_id=arn, cost_usd=0.001))
        ledger.add(UsageRecord(ts="2026-01-01T00:00:00Z", execution_id=arn, cost_usd=None))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = ResultStore(s3_bucket, s3_client, on_created=counters.item_done)
    for _ in range(3):  # a re-run that reaches the end again finds the result and counts nothing
        results.put(arn, "7", {"ok": True})
    results.put(arn, "8", {"ok": True})
    run = counters.read()
    assert run.attempts == 8 * 26 and run.spend_usd == pytest.approx(8 * 25 * 0.001)
    assert run.items_done == 2


def test_a_counter_that_cannot_be_written_never_fails_the_attempt(s3_client: Any, s3_bucket: str) -> None:
    counters = RunCounters("no-such-table", "run-x", client=boto3.client("dynamodb", region_name="us-east-1"))
    counters.attempt(UsageRecord(ts="2026-01-01T00:00:00Z", cost_usd=1.0))  # logged, not raised
    counters.item_done()
