"""The graph-step and validate-input handlers, in-process, against moto and the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stepgraph import resources
from stepgraph.errors import InvalidInput, UnknownGraph
from stepgraph.limiter.table import ensure_limiter_table
from stepgraph.local.lambdas import cold_start, invoke
from stepgraph.local.simulator import DEV_KEY, SimulatorHandle
from tests.fixtures.aws import usage_records

EXEC = "arn:aws:states:us-east-1:123456789012:execution:stepgraph-graph-fanout:run-1"


@pytest.fixture
def stack(simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    env = {
        "STEPGRAPH_BUCKET": "stepgraph-data",
        "STEPGRAPH_LIMITER_TABLE": "stepgraph-limiter",
        "STEPGRAPH_TIME_SCALE": "0.05",
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "STEPGRAPH_OPENROUTER_BASE_URL": simulator.base_url,
        "STEPGRAPH_OLLAMA_BASE_URL": simulator.ollama_base_url,
        "OPENROUTER_API_KEY": f"dev={DEV_KEY}",
        "OLLAMA_API_KEY": f"dev={DEV_KEY}",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cold_start()  # a new AWS account (moto) gets new function containers
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="stepgraph-data")
        ensure_limiter_table(boto3.client("dynamodb", region_name="us-east-1"), "stepgraph-limiter")
        yield {"s3": s3, "sim": simulator}


def step_until_done(event: dict[str, Any], limit: int = 30) -> tuple[dict[str, Any], list[str]]:
    statuses = []
    for _ in range(limit):
        result = invoke(resources.GRAPH_STEP_FUNCTION, event)
        statuses.append(result["status"])
        if result["status"] in ("done", "failed"):
            return result, statuses
        if result["status"] == "throttled":
            import time

            assert result["retry_after_s"] <= 5, result
            time.sleep(result["retry_after_s"])  # what the state machine's Wait does
    raise AssertionError(f"no end after {limit} steps: {statuses}")


def test_document_pipeline_runs_to_done_with_one_record_per_attempt(stack: dict[str, Any]) -> None:
    event = {
        "execution_id": EXEC,
        "item_id": 0,
        "item": {"text": "A ticket about billing.", "max_rounds": 1},
        "graph": "document_pipeline",
        "config": {},
    }
    result, _ = step_until_done(event)
    assert result["status"] == "done" and result["result_ref"]["key"] == "results/run-1/0.json"
    body = json.loads(
        stack["s3"].get_object(Bucket="stepgraph-data", Key=result["result_ref"]["key"])["Body"].read()
    )
    assert body["state"]["rounds"] == 1 and body["state"]["draft"]
    records = usage_records(stack["s3"])
    sim_requests = stack["sim"].requests()
    assert len(records) == len(sim_requests) == 4  # draft, critique, revise, critique
    assert {r["node"] for r in records} == {"draft", "critique", "revise"}
    assert all(
        r["execution_id"] == EXEC and r["item_id"] == "0" and r["thread_id"] == "run-1/0" for r in records
    )
    # A duplicate invocation (a Step Functions retry) finds the thread finished: no new provider call.
    again = invoke(resources.GRAPH_STEP_FUNCTION, event)
    assert again["status"] == "done" and len(stack["sim"].requests()) == 4


def test_fanout_parallel_branches_all_kept(stack: dict[str, Any]) -> None:
    event = {
        "execution_id": EXEC,
        "item_id": "f1",
        "item": {"text": "Quarterly report."},
        "graph": "fanout",
        "config": {},
    }
    result, _ = step_until_done(event)
    body = json.loads(
        stack["s3"].get_object(Bucket="stepgraph-data", Key=result["result_ref"]["key"])["Body"].read()
    )
    assert sorted(n.split(":")[0] for n in body["state"]["notes"]) == ["facts", "questions", "risks"]
    assert body["state"]["synthesis"]


def test_a_node_failure_resumes_at_that_node(stack: dict[str, Any]) -> None:
    event = {
        "execution_id": EXEC,
        "item_id": "r",
        "item": {"text": "Resume me.", "max_rounds": 1},
        "graph": "document_pipeline",
        "config": {},
    }
    # The draft succeeds (a harmless fault entry), then the critique gets a 403: a fatal, typed error.
    stack["sim"].queue_faults({"delay_ms": 1}, {"status": 403})
    with pytest.raises(Exception, match="rejected"):
        invoke(resources.GRAPH_STEP_FUNCTION, event)
    first = len(stack["sim"].requests())
    result, _ = step_until_done(event)
    nodes = [r["node"] for r in usage_records(stack["s3"])]
    assert result["status"] == "done"
    assert nodes.count("draft") == 1  # the first node ran once: the resume started at the failure
    assert first == 2 and nodes[:2] == ["draft", "critique"]


def test_fanout_under_the_free_profile_never_exceeds_the_window(stack: dict[str, Any]) -> None:
    event = {
        "execution_id": EXEC,
        "item_id": "t",
        "item": {"text": "x"},
        "graph": "fanout",
        "config": {"limits_profile": "openrouter-free"},
    }
    # rpm 20 scaled: one slot every 0.15 s, max wait 0.25 s: the fan-out of three must throttle at least once.
    result, statuses = step_until_done(event)
    assert result["status"] == "done"
    assert stack["sim"].stats()["accounts"]["default"]["window_violations"] == 0


def test_validate_input(stack: dict[str, Any]) -> None:
    out = invoke(
        resources.VALIDATE_FUNCTION,
        {"input": {"graph": "fanout", "items": [{"text": "a"}]}, "execution_id": EXEC},
    )
    assert out["mode"] == "inline" and out["config"]["max_concurrency"] == resources.DEFAULT_MAX_CONCURRENCY
    big = invoke(
        resources.VALIDATE_FUNCTION,
        {"input": {"graph": "fanout", "items": [{"i": i} for i in range(250)]}, "execution_id": EXEC},
    )
    assert (
        big["mode"] == "distributed"
        and big["items_s3"]["key"] == "items/run-1/items.json"
        and big["item_count"] == 250
    )
    with pytest.raises(UnknownGraph, match="registered: document_pipeline, fanout"):
        invoke(resources.VALIDATE_FUNCTION, {"input": {"graph": "nope", "items": []}})
    with pytest.raises(InvalidInput, match=r"input\.items\[1\]: item is"):
        invoke(
            resources.VALIDATE_FUNCTION, {"input": {"graph": "fanout", "items": [{}, {"t": "x" * 300_000}]}}
        )
    with pytest.raises(InvalidInput, match=r"input\.items: Input should be a valid list"):
        invoke(resources.VALIDATE_FUNCTION, {"input": {"graph": "fanout", "items": "nope"}})


def test_validate_input_checks_items_read_from_s3_before_any_item_runs(stack: dict[str, Any]) -> None:
    s3 = stack["s3"]
    rows = [{"text": "a"}, {"text": "b"}, {"text": "x" * 300_000}]
    s3.put_object(Bucket="stepgraph-data", Key="items/big.json", Body=json.dumps(rows).encode())
    ref = {"bucket": "stepgraph-data", "key": "items/big.json"}
    with pytest.raises(
        InvalidInput, match=r"s3://stepgraph-data/items/big.json item\[2\]: item is 300,012 bytes"
    ):
        invoke(resources.VALIDATE_FUNCTION, {"input": {"graph": "fanout", "items_s3": ref}})
    # The deployed role reads items/ only: a manifest elsewhere is refused here too, not just in AWS.
    s3.put_object(Bucket="stepgraph-data", Key="elsewhere/ok.json", Body=json.dumps(rows[:2]).encode())
    outside = {"bucket": "stepgraph-data", "key": "elsewhere/ok.json"}
    with pytest.raises(
        InvalidInput, match=r"input\.items_s3: s3://stepgraph-data/elsewhere/ok.json is outside items/"
    ):
        invoke(resources.VALIDATE_FUNCTION, {"input": {"graph": "fanout", "items_s3": outside}})
    s3.put_object(Bucket="stepgraph-data", Key="items/ok.json", Body=json.dumps(rows[:2]).encode())
    ok = invoke(
        resources.VALIDATE_FUNCTION,
        {"input": {"graph": "fanout", "items_s3": {"bucket": "stepgraph-data", "key": "items/ok.json"}}},
    )
    assert ok["mode"] == "distributed" and ok["item_count"] == 2
    # An item never fails the batch unless the user says otherwise.
    assert (
        ok["config"]["tolerated_failure_percentage"] == resources.DEFAULT_TOLERATED_FAILURE_PERCENTAGE == 100
    )
    strict = invoke(
        resources.VALIDATE_FUNCTION,
        {
            "input": {
                "graph": "fanout",
                "items_s3": {"bucket": "stepgraph-data", "key": "items/ok.json"},
                "config": {"tolerated_failure_percentage": 5},
            }
        },
    )
    assert strict["config"]["tolerated_failure_percentage"] == 5


def test_start_refuses_an_oversize_item_and_a_manifest_outside_items(
    stack: dict[str, Any], tmp_path: Any
) -> None:
    from stepgraph.executions import start

    big = tmp_path / "big.jsonl"
    big.write_text(json.dumps({"text": "a"}) + "\n" + json.dumps({"text": "x" * 300_000}) + "\n")
    with pytest.raises(InvalidInput, match=r"big.jsonl item\[1\]: item is 300,012 bytes"):
        start(
            "arn:aws:states:us-east-1:123456789012:stateMachine:x",
            graph="fanout",
            items=str(big),
            bucket="stepgraph-data",
        )
    assert stack["s3"].list_objects_v2(Bucket="stepgraph-data").get("KeyCount", 0) == 0  # nothing uploaded
    with pytest.raises(InvalidInput, match="is outside items/"):
        start(
            "arn:aws:states:us-east-1:123456789012:stateMachine:x",
            graph="fanout",
            items="s3://stepgraph-data/other/x.json",
        )
