"""Human review on the real state machine (moto) with the real handlers: interrupt → park → answer → resume."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stepgraph.errors import StepGraphError
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.review.answer import NotWaiting, Reviews
from stepgraph.review.store import ReviewStore
from tests.fixtures import review_graphs


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    env = {
        "STEPGRAPH_GRAPHS": json.dumps(review_graphs.GRAPHS),
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "OPENROUTER_API_KEY": "dev=sk-unused",  # these graphs call no model
        "OLLAMA_API_KEY": "dev=sk-unused",
    }
    with local_stack(use_dynamodb_local=False, env=env) as st:
        yield st


def start(st: LocalStack, graph: str, items: list[Any], name: str, **config: Any) -> str:
    payload = {"graph": graph, "items": items, "config": {"max_concurrency": 4, **config}}
    sfn = st.client("stepfunctions")
    return str(
        sfn.start_execution(stateMachineArn=st.state_machine_arn, name=name, input=json.dumps(payload))[
            "executionArn"
        ]
    )


def reviews(st: LocalStack, arn: str) -> Reviews:
    return Reviews(arn, ReviewStore(st.bucket, st.client("s3")), st.client("stepfunctions"))


def wait_pending(rv: Reviews, count: int, *, round_: int = 1, timeout_s: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [r for r in rv.pending() if r["round"] >= round_]
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{count} reviews (round {round_}) not waiting: {rv.all()}"
        time.sleep(0.2)


def finish(st: LocalStack, arn: str, timeout_s: float = 60) -> dict[str, Any]:
    sfn = st.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "execution did not end"
        time.sleep(0.2)
    assert desc["status"] == "SUCCEEDED", desc
    return dict(json.loads(desc["output"]))


def result(st: LocalStack, item: dict[str, Any]) -> dict[str, Any]:
    ref = item["result_ref"]
    body = st.client("s3").get_object(Bucket=ref["bucket"], Key=ref["key"])["Body"].read()
    return dict(json.loads(body))


def final_state(st: LocalStack, item: dict[str, Any]) -> dict[str, Any]:
    return dict(result(st, item)["state"])


def test_one_interrupt_is_answered_and_the_item_resumes_with_the_answer(stack: LocalStack) -> None:
    arn = start(stack, "one_review", [{"text": "refund 40 EUR?"}], "one")
    rv = reviews(stack, arn)
    [row] = wait_pending(rv, 1)
    assert row["nodes"] == ["ask"] and row["payloads"] == [{"question": "ask?", "text": "refund 40 EUR?"}]
    assert row["waiting_since"] and row["deadline"]
    calls = len(stack.invocations)
    time.sleep(1.0)
    assert len(stack.invocations) == calls  # nothing runs while the item waits
    rv.answer(row["item_id"], {"approved": True})
    out = finish(stack, arn)
    state = final_state(stack, out["items"][0])
    assert state["answers"] == [{"ask": {"approved": True}}] and state["finished"]
    assert result(stack, out["items"][0])["review"]["rounds"] == 1
    with pytest.raises(NotWaiting, match="already answered"):  # answering twice is refused
        rv.answer(row["item_id"], {"approved": False})


def test_two_rounds_on_one_item(stack: LocalStack) -> None:
    arn = start(stack, "two_rounds", [{"text": "t"}], "rounds")
    rv = reviews(stack, arn)
    [first] = wait_pending(rv, 1)
    time.sleep(0.5)
    rv.answer(first["item_id"], "yes")
    [second] = wait_pending(rv, 1, round_=2)
    assert second["nodes"] == ["second"] and second["round"] == 2
    time.sleep(0.5)
    rv.answer(second["item_id"], "also yes")
    body = result(stack, finish(stack, arn)["items"][0])
    assert body["state"]["answers"] == [{"first": "yes"}, {"second": "also yes"}]
    # The time in review is kept with the item: both rounds' waits add up.
    assert body["review"]["rounds"] == 2 and body["review"]["waited_s"] >= 1.0


def test_two_interrupts_in_one_superstep_and_several_items(stack: LocalStack) -> None:
    arn = start(stack, "two_at_once", [{"text": "a"}, {"text": "b"}, {"text": "c"}], "several")
    rv = reviews(stack, arn)
    rows = wait_pending(rv, 3)
    assert all(sorted(r["nodes"]) == ["left", "right"] for r in rows)
    for r in rows:
        rv.answer(r["item_id"], f"ok {r['item_id']}")
    out = finish(stack, arn)
    for item in out["items"]:
        answers = final_state(stack, item)["answers"]
        value = f"ok {item['item_id']}"
        assert sorted(answers, key=str) == [{"left": value}, {"right": value}]


def test_an_unanswered_review_times_out_and_fails_only_its_item(stack: LocalStack) -> None:
    arn = start(stack, "one_review", [{"text": "a"}, {"text": "b"}], "timeout", review_timeout_s=2)
    rv = reviews(stack, arn)
    rows = wait_pending(rv, 2)
    rv.answer(rows[0]["item_id"], "yes")
    out = finish(stack, arn)
    by_id = {str(i["item_id"]): i for i in out["items"]}
    assert by_id[rows[0]["item_id"]]["status"] == "done"
    timed_out = by_id[rows[1]["item_id"]]
    assert timed_out["status"] == "failed" and timed_out["error"] == "ReviewTimedOut"
    with pytest.raises(NotWaiting, match="timed out"):
        rv.answer(rows[1]["item_id"], "too late")


def test_answering_an_item_that_is_not_waiting_is_refused(stack: LocalStack) -> None:
    arn = start(stack, "one_review", [{"text": "a"}], "unknown")
    rv = reviews(stack, arn)
    with pytest.raises(NotWaiting, match="item 7 of unknown has no review"):
        rv.answer("7", "x")
    [row] = wait_pending(rv, 1)
    rv.answer(row["item_id"], "x")
    with pytest.raises(NotWaiting, match="already answered"):
        rv.answer(row["item_id"], "x")
    finish(stack, arn)


def test_two_answers_at_once_only_one_is_applied(stack: LocalStack) -> None:
    arn = start(stack, "one_review", [{"text": "a"}], "race")
    rv = reviews(stack, arn)
    [row] = wait_pending(rv, 1)
    outcomes: list[str] = []

    def answer(value: str) -> None:
        try:
            rv.answer(row["item_id"], value)
            outcomes.append("sent")
        except StepGraphError:
            outcomes.append("refused")

    threads = [threading.Thread(target=answer, args=(v,)) for v in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "sent"]
    answers = final_state(stack, finish(stack, arn)["items"][0])["answers"]
    assert len(answers) == 1


def test_a_crash_right_after_the_answer_resumes_once(stack: LocalStack) -> None:
    review_graphs.clear_crashed()
    arn = start(stack, "crash_after_answer", [{"text": "a"}], "crash")
    rv = reviews(stack, arn)
    [row] = wait_pending(rv, 1)
    rv.answer(row["item_id"], {"approved": True})
    state = final_state(stack, finish(stack, arn)["items"][0])
    assert review_graphs.crashed() == [
        "0"
    ]  # the step died after the answer was checkpointed, and was retried
    assert any(not i["ok"] and i["error"] == "ContainerDied" for i in stack.invocations)
    assert state["answers"] == [{"ask": {"approved": True}}] and state["finished"]


def test_items_of_a_distributed_map_park_and_resume_too(stack: LocalStack) -> None:
    from stepgraph.runtime.results import ResultStore

    s3 = stack.client("s3")
    items = [{"text": "a"}, {"text": "b"}]
    s3.put_object(Bucket=stack.bucket, Key="items/review.json", Body=json.dumps(items).encode())
    payload = {"graph": "one_review", "items_s3": {"bucket": stack.bucket, "key": "items/review.json"}}
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn, name="dist", input=json.dumps(payload)
    )["executionArn"]
    rv = reviews(stack, arn)  # the records are the parent execution's, the tokens the child executions'
    for row in wait_pending(rv, 2):
        rv.answer(row["item_id"], f"yes {row['item_id']}")
    assert finish(stack, arn)["mode"] == "distributed"
    store = ResultStore(stack.bucket, s3)
    for item_id in ("0", "1"):
        body = json.loads(s3.get_object(Bucket=stack.bucket, Key=store.key(arn, item_id))["Body"].read())
        assert body["state"]["answers"] == [{"ask": f"yes {item_id}"}] and body["review"]["rounds"] == 1
