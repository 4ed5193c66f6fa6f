"""The real state machine definition on moto, the real handlers, the simulator and DynamoDB Local."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from stepgraph import resources
from stepgraph.local.asl import load_definition
from stepgraph.local.simulator import DEV_KEY, SimulatorHandle
from stepgraph.local.stack import ACCOUNT, LocalStack, function_arn, local_stack
from stepgraph.run_status import status
from tests.fixtures.aws import execute


@pytest.fixture
def stack(make_simulator: Any) -> Iterator[tuple[LocalStack, SimulatorHandle]]:
    sim = make_simulator(rpm=20, rpd=1000, time_scale=0.05, fail_rate=0.05, seed=3)
    env = {
        "STEPGRAPH_TIME_SCALE": "0.05",
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "STEPGRAPH_LIMIT_MARGIN": "0.05",
        "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
        "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
        "OPENROUTER_API_KEY": f"dev={DEV_KEY}",
        "OLLAMA_API_KEY": f"dev={DEV_KEY}",
        "STEPGRAPH_LIMITS_OVERRIDES": json.dumps({"rpd": {"capacity": 1000}}),
    }
    with local_stack(env=env) as st:
        yield st, sim


def run(st: LocalStack, payload: dict[str, Any], name: str) -> dict[str, Any]:
    return execute(st, payload, name)


def usage(st: LocalStack) -> list[dict[str, Any]]:
    s3 = st.client("s3")
    out = []
    for obj in s3.list_objects_v2(Bucket=st.bucket, Prefix="usage/").get("Contents", []):
        out += [
            json.loads(x)
            for x in s3.get_object(Bucket=st.bucket, Key=obj["Key"])["Body"].read().decode().splitlines()
        ]
    return out


def test_batch_with_faults_finishes_every_item_and_records_every_attempt(
    stack: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = stack
    items = [{"text": f"Ticket {i}: the invoice is wrong.", "max_rounds": 1} for i in range(6)]
    # A 429 storm and a crash of the Lambda mid-node (raised before the handler runs, as a dead container).
    sim.queue_faults({"status": 429, "retry_after_s": 1}, {"status": 429, "retry_after_s": 1})
    crashed: list[str] = []

    class ContainerDied(Exception):
        error_type = "Lambda.ServiceException"  # what Lambda reports for a crashed container

    def crash_once(function: str, event: Any) -> None:
        if function.endswith("graph-step") and event.get("item_id") == 2 and not crashed:
            crashed.append("x")
            raise ContainerDied("Lambda container died")

    st.hooks.append(crash_once)
    desc = run(
        st, {"graph": "document_pipeline", "items": items, "config": {"max_concurrency": 4}}, "e2e-faults"
    )
    assert desc["status"] == "SUCCEEDED", desc
    out = json.loads(desc["output"])
    assert [i["status"] for i in out["items"]] == ["done"] * 6  # the crashed step was retried by the ASL
    assert crashed and any(not i["ok"] for i in st.invocations)
    records, requests = usage(st), sim.requests()
    assert len(records) == len(requests)  # one usage record per provider attempt, none lost, none doubled
    assert sorted(r["generation_id"] for r in records if r["generation_id"]) == sorted(
        q["generation_id"] for q in requests if q.get("generation_id")
    )
    assert sim.stats()["accounts"]["default"]["window_violations"] == 0
    assert sim.stats()["rate_limited"] >= 2


def test_large_batches_use_the_distributed_map(stack: tuple[LocalStack, SimulatorHandle]) -> None:
    st, _ = stack
    s3 = st.client("s3")
    s3.put_object(
        Bucket=st.bucket,
        Key="items/big.json",
        Body=json.dumps([{"text": f"row {i}"} for i in range(4)]).encode(),
    )
    desc = run(
        st, {"graph": "fanout", "items_s3": {"bucket": st.bucket, "key": "items/big.json"}}, "e2e-dist"
    )
    assert desc["status"] == "SUCCEEDED" and json.loads(desc["output"])["mode"] == "distributed"
    assert s3.list_objects_v2(Bucket=st.bucket, Prefix="results/e2e-dist/")["KeyCount"] == 4


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        ({"items": [1]}, "InvalidInput", "input.graph"),
        ({"graph": "nope", "items": [1]}, "UnknownGraph", "unknown graph 'nope'"),
        ({"graph": "fanout", "items": "x"}, "InvalidInput", "input.items"),
        ({"graph": "fanout", "items": [{"t": "x" * 210_000}]}, "InvalidInput", "input.items[0]"),
        # Checked before any item starts, not once per item.
        (
            {"graph": "fanout", "items": [1], "config": {"models": ["openrouter:nope"]}},
            "InvalidInput",
            "input.config.models[0]: model 'nope' is not in provider 'openrouter'",
        ),
        (
            {"graph": "fanout", "items": [1], "config": {"limits_profile": "gold"}},
            "InvalidInput",
            "input.config.limits_profile: unknown limit profile 'gold'",
        ),
    ],
)
def test_bad_input_ends_the_execution_with_a_typed_error(
    stack: tuple[LocalStack, SimulatorHandle], payload: dict[str, Any], error: str, message: str
) -> None:
    st, _ = stack
    st.invocations.clear()
    desc = run(st, payload, f"bad-{error}-{abs(hash(message)) % 1000}")
    assert desc["status"] == "FAILED"
    assert desc.get("error") == error and message in desc.get("cause", "")
    assert not any(i["function"] == resources.GRAPH_STEP_FUNCTION for i in st.invocations)


def test_a_failed_item_of_a_distributed_batch_is_named_by_status(
    stack: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, _ = stack
    s3 = st.client("s3")
    # Item 1 has no text: the fanout graph rejects it; the other items finish.
    rows = [{"text": "row 0"}, {"note": "no text here"}, {"text": "row 2"}]
    s3.put_object(Bucket=st.bucket, Key="items/one-bad.json", Body=json.dumps(rows).encode())
    payload = {"graph": "fanout", "items_s3": {"bucket": st.bucket, "key": "items/one-bad.json"}}
    desc = run(st, payload, "e2e-dist-bad")
    assert desc["status"] == "SUCCEEDED", desc  # a failed item never fails the batch
    key = f"{resources.PREFIX_FAILURES}e2e-dist-bad/1.json"
    record = json.loads(s3.get_object(Bucket=st.bucket, Key=key)["Body"].read())
    assert record["item_id"] == 1 and record["status"] == "failed" and record["error"] == "MissingField"
    report = status(desc["executionArn"], endpoint_url=st.endpoint_url)
    assert report["items_done"] == 2 and report["unaccounted"] == 0
    (failed,) = report["failed_items"]
    assert failed == record and "text" in failed["cause"]


def test_an_item_whose_failure_record_cannot_be_written_still_ends_and_is_counted_unaccounted(
    stack: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, _ = stack
    s3 = st.client("s3")
    # The same definition, but failure records go to a bucket that does not exist: the write fails.
    definition = load_definition(
        {
            "ValidateFunctionArn": function_arn(resources.VALIDATE_FUNCTION),
            "GraphStepFunctionArn": function_arn(resources.GRAPH_STEP_FUNCTION),
            "DataBucketName": st.bucket,
        }
    )
    states = definition["States"]["DistributedMap"]["ItemProcessor"]["States"]
    states["DistRecordFailure"]["Parameters"]["Bucket"] = "no-such-bucket"
    arn = st.client("stepfunctions").create_state_machine(
        name="records-lost", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/x"
    )["stateMachineArn"]
    rows = [{"text": "row 0"}, {"note": "no text here"}]
    s3.put_object(Bucket=st.bucket, Key="items/lost.json", Body=json.dumps(rows).encode())
    payload = {"graph": "fanout", "items_s3": {"bucket": st.bucket, "key": "items/lost.json"}}
    desc = execute(replace(st, state_machine_arn=arn), payload, "e2e-dist-lost")
    assert desc["status"] == "SUCCEEDED", desc  # the lost record did not fail the item, nor the batch
    assert s3.list_objects_v2(Bucket=st.bucket, Prefix=resources.PREFIX_FAILURES).get("KeyCount", 0) == 0
    report = status(desc["executionArn"], endpoint_url=st.endpoint_url)
    assert report["items_done"] == 1 and report["failed_items"] == [] and report["unaccounted"] == 1


def test_the_functions_get_their_environment_and_the_callers_is_left_alone(
    stack: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = stack
    before = dict(os.environ)
    payload = {"graph": "fanout", "items": [{"text": "row 0"}]}
    out = st.invoke(resources.VALIDATE_FUNCTION, {"input": payload, "execution_id": "arn:x:execution:sm:env"})
    assert out["mode"] == "inline"  # the handler read its settings from its own environment
    assert st.function_env["STEPGRAPH_OPENROUTER_BASE_URL"] == sim.base_url
    assert "STEPGRAPH_OPENROUTER_BASE_URL" not in os.environ and "STEPGRAPH_ENDPOINT_URL" not in os.environ
    assert dict(os.environ) == before
    (entry,) = [i for i in st.invocations if i["function"] == resources.VALIDATE_FUNCTION]
    assert entry["ok"] and entry["pid"] not in (0, os.getpid())  # it ran in a worker process


def test_each_function_runs_on_warm_workers_of_its_own_and_a_recycle_cold_starts(
    stack: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, _ = stack
    event = {
        "input": {"graph": "fanout", "items": [{"text": "row 0"}]},
        "execution_id": "arn:x:execution:sm:w",
    }
    first = st.run_function(resources.VALIDATE_FUNCTION, event)
    second = st.run_function(resources.VALIDATE_FUNCTION, event)
    assert first.ok and second.ok and first.cold and not second.cold
    assert first.pid == second.pid and first.pid != os.getpid()  # the warm container, not this process
    poller = st.run_function(resources.CREDITS_POLLER_FUNCTION, {})
    assert poller.cold and poller.pid not in (first.pid, os.getpid())  # each function its own container
    st.recycle()
    third = st.run_function(resources.VALIDATE_FUNCTION, event)
    assert third.ok and third.cold and third.pid != first.pid
