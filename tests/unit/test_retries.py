"""`stepgraph retry` against AWS, with boto3 stubbed (botocore's Stubber: the exact calls and their parameters)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from stepgraph.errors import ConfigError
from stepgraph.retries import parse_item_ids, plan_retry, start_retry
from stepgraph.schemas import StepEvent

SM = "arn:aws:states:eu-west-1:111122223333:stateMachine:stepgraph-graph-fanout"
ORIG = "arn:aws:states:eu-west-1:111122223333:execution:stepgraph-graph-fanout:june"
BUCKET = "stepgraph-data-111122223333"


def clients() -> tuple[Any, Any, Stubber, Stubber]:
    sfn = boto3.client("stepfunctions", region_name="eu-west-1")
    s3 = boto3.client("s3", region_name="eu-west-1")
    return sfn, s3, Stubber(sfn), Stubber(s3)


def describe(status: str, inp: dict[str, Any], out: Any = None) -> dict[str, Any]:
    return {
        "executionArn": ORIG,
        "stateMachineArn": SM,
        "status": status,
        "startDate": "2026-12-01T10:00:00Z",
        "input": json.dumps(inp),
        **({"output": json.dumps(out)} if out is not None else {}),
    }


def listing(keys: list[str]) -> dict[str, Any]:
    return {"KeyCount": len(keys), "Contents": [{"Key": k} for k in keys], "IsTruncated": False}


def test_an_inline_run_is_retried_inline_with_its_failed_items_in_envelopes() -> None:
    sfn, s3, sfn_stub, s3_stub = clients()
    items = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    out = {
        "items": [
            {"item_id": 0, "status": "done", "result_ref": {"bucket": BUCKET, "key": "results/june/0.json"}},
            {"item_id": 1, "status": "failed", "error": "ProviderFatal"},
            {"item_id": 2, "status": "done", "result_ref": {"bucket": BUCKET, "key": "results/june/2.json"}},
        ]
    }
    inp = {"graph": "fanout", "items": items, "config": {"max_concurrency": 4, "budget_usd": 1.0}}
    sfn_stub.add_response("describe_execution", describe("SUCCEEDED", inp, out), {"executionArn": ORIG})
    s3_stub.add_response(
        "list_objects_v2",
        listing(["results/june/0.json", "results/june/2.json"]),
        {"Bucket": BUCKET, "Prefix": "results/june/"},
    )
    expected_input = {
        "graph": "fanout",
        "config": {"max_concurrency": 4, "budget_usd": 2.0, "retry_of": ORIG},
        "items": [{"retried_item_id": "1", "item": {"text": "b"}}],
    }
    sfn_stub.add_response(
        "start_execution",
        {"executionArn": f"{ORIG}-r", "startDate": "2026-12-01T11:00:00Z"},
        {"stateMachineArn": SM, "name": "june-r", "input": json.dumps(expected_input)},
    )
    s3_stub.add_response(
        "put_object",
        {},
        {"Bucket": BUCKET, "Key": "retries/june/june-r.json", "Body": ANY, "IfNoneMatch": "*"},
    )
    with sfn_stub, s3_stub:
        plan = plan_retry(ORIG, sfn=sfn, s3=s3, config={"budget_usd": 2.0})
        assert plan.item_ids == ["1"] and plan.inline
        assert start_retry(plan, sfn=sfn, s3=s3, name="june-r") == f"{ORIG}-r"
    sfn_stub.assert_no_pending_responses()
    s3_stub.assert_no_pending_responses()


def test_a_distributed_run_is_retried_through_a_new_manifest() -> None:
    sfn, s3, sfn_stub, s3_stub = clients()
    manifest = [{"text": str(i)} for i in range(4)]
    ref = {"bucket": BUCKET, "key": "items/june/items.json"}
    sfn_stub.add_response(
        "describe_execution", describe("SUCCEEDED", {"graph": "fanout", "items_s3": ref}, {"mode": "distributed"}),
        {"executionArn": ORIG},
    )  # fmt: skip
    s3_stub.add_response("get_object", {"Body": _body(manifest)}, {"Bucket": BUCKET, "Key": ref["key"]})
    s3_stub.add_response(
        "list_objects_v2", listing(["results/june/0.json"]), {"Bucket": BUCKET, "Prefix": "results/june/"}
    )
    s3_stub.add_response(
        "list_objects_v2", listing(["failures/june/2.json"]), {"Bucket": BUCKET, "Prefix": "failures/june/"}
    )
    # --unaccounted: items 1 and 3 have neither a result nor a failure record; 2 failed and is left alone.
    envelopes = [{"retried_item_id": i, "item": {"text": i}} for i in ("1", "3")]
    new_key = "items/june-r/items.json"
    s3_stub.add_response(
        "put_object",
        {},
        {"Bucket": BUCKET, "Key": new_key, "Body": json.dumps(envelopes).encode(), "IfNoneMatch": "*"},
    )
    sfn_stub.add_response(
        "start_execution",
        {"executionArn": f"{ORIG}-r", "startDate": "2026-12-01T11:00:00Z"},
        {"stateMachineArn": SM, "name": "june-r", "input": ANY},
    )
    s3_stub.add_response(
        "put_object",
        {},
        {"Bucket": BUCKET, "Key": "retries/june/june-r.json", "Body": ANY, "IfNoneMatch": "*"},
    )
    with sfn_stub, s3_stub:
        plan = plan_retry(ORIG, sfn=sfn, s3=s3, unaccounted=True)
        assert plan.item_ids == ["1", "3"] and not plan.inline
        start_retry(plan, sfn=sfn, s3=s3, name="june-r")
    s3_stub.assert_no_pending_responses()


def _body(value: Any) -> Any:
    from io import BytesIO

    from botocore.response import StreamingBody

    raw = json.dumps(value).encode()
    return StreamingBody(BytesIO(raw), len(raw))


def test_a_running_execution_is_refused() -> None:
    sfn, s3, sfn_stub, _ = clients()
    sfn_stub.add_response("describe_execution", describe("RUNNING", {"graph": "fanout", "items": [1]}))
    with sfn_stub, pytest.raises(ConfigError, match="execution june is still running"):
        plan_retry(ORIG, sfn=sfn, s3=s3)


@pytest.mark.parametrize(
    ("text", "match"),
    [("3,,7", "'' is not an item id"), ("3;7", "'3;7' is not an item id"), (" ", "'' is not an item id")],
)
def test_bad_item_lists_name_the_bad_part(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_item_ids(text)
    assert parse_item_ids("3, 7,3,12") == ["3", "7", "12"]


def test_a_retry_step_works_under_the_original_item_and_thread() -> None:
    event = StepEvent.model_validate(
        {
            "execution_id": f"{ORIG}-retry-1",
            "item_id": 0,  # the retry's Map index
            "item": {"retried_item_id": "7", "item": {"text": "b"}},
            "graph": "fanout",
            "config": {"retry_of": ORIG},
        }
    )
    assert (event.item_id, event.item, event.thread_id) == ("7", {"text": "b"}, "june/7")
    with pytest.raises(ValueError, match="a retry's item must be"):
        StepEvent.model_validate(
            {
                "execution_id": "x",
                "item_id": 0,
                "item": {"text": "b"},
                "graph": "g",
                "config": {"retry_of": ORIG},
            }
        )
