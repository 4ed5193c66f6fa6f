"""`run_step` with interrupts on S3 checkpoints (moto): an answer is applied only to the interrupts it
answers, so a repeated or stale delivery neither re-applies it nor answers the next round; an item that
waits runs nothing and calls no model."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage

from stepgraph.checkpoint import S3Saver
from stepgraph.graphs.context import StepContext
from stepgraph.graphs.triage_with_review import build_graph
from stepgraph.review.store import ReviewStore
from stepgraph.runtime.results import ResultStore
from stepgraph.runtime.step import run_step
from stepgraph.schemas import ReviewAnswer, StepEvent
from tests.fixtures import review_graphs

EXEC = "arn:aws:states:us-east-1:123456789012:execution:sm:run1"


class FakeModel:
    def __init__(self, reply: str) -> None:
        self.calls, self.reply = 0, reply

    def invoke(self, messages: list[Any]) -> AIMessage:
        self.calls += 1
        return AIMessage(content=self.reply)


def step(graph: Any, bucket: str, s3: Any, model: FakeModel, review: dict[str, Any] | None = None) -> Any:
    event = StepEvent(
        execution_id=EXEC,
        item_id="0",
        item={"text": "charged twice"},
        graph="g",
        review=ReviewAnswer(answers=review) if review is not None else None,
    )
    return run_step(
        event,
        graph=graph,
        context=StepContext(model=model, item_id="0"),
        item=event.item,
        results=ResultStore(bucket, s3),
        remaining_s=lambda: 600.0,
        margin_s=1.0,
        reviews=ReviewStore(bucket, s3),
    )


def test_waiting_runs_nothing_and_a_stale_answer_is_not_applied(s3_client: Any, s3_bucket: str) -> None:
    graph = build_graph().compile(checkpointer=S3Saver(s3_bucket, client=s3_client))
    model = FakeModel("billing 0.2")
    first = step(graph, s3_bucket, s3_client, model)
    assert first.status == "interrupted" and first.review_ref is not None and model.calls == 1
    record = ReviewStore(s3_bucket, s3_client).get(first.review_ref.key)
    assert record is not None
    [pending] = record[0]["interrupts"]
    assert pending["node"] == "review" and pending["value"]["label"] == "billing"
    # Called again without an answer, or with an answer to other interrupts: still waiting, no model call.
    assert step(graph, s3_bucket, s3_client, model).status == "interrupted"
    assert step(graph, s3_bucket, s3_client, model, {"not-this-one": "x"}).status == "interrupted"
    assert model.calls == 1
    answer = {pending["id"]: {"action": "edit", "label": "account"}}
    done = step(graph, s3_bucket, s3_client, model, answer)
    assert done.status == "done"
    # The same answer delivered again (a retried step) finds the item finished: nothing applied twice.
    again = step(graph, s3_bucket, s3_client, model, answer)
    assert again.status == "done" and again.result_ref == done.result_ref
    state = ResultStore(s3_bucket, s3_client).get(done.result_ref)["state"]  # type: ignore[arg-type]
    assert state["review"] == {"action": "edit", "label": "account"} and state["final_label"] == "account"
    assert model.calls == 1


def test_a_round_one_answer_does_not_answer_round_two(s3_client: Any, s3_bucket: str) -> None:
    graph = review_graphs.two_rounds().compile(checkpointer=S3Saver(s3_bucket, client=s3_client))
    model = FakeModel("")
    store = ReviewStore(s3_bucket, s3_client)
    ref = step(graph, s3_bucket, s3_client, model).review_ref
    assert ref is not None
    round1 = store.get(ref.key)[0]  # type: ignore[index]
    answer = {round1["interrupts"][0]["id"]: "yes"}
    assert step(graph, s3_bucket, s3_client, model, answer).status == "interrupted"
    round2 = store.get(ref.key)[0]  # type: ignore[index]
    assert round2["round"] == 2 and round2["interrupts"][0]["node"] == "second"
    # The round-1 answer delivered again leaves round 2 waiting.
    assert step(graph, s3_bucket, s3_client, model, answer).status == "interrupted"
    assert graph.get_state({"configurable": {"thread_id": "run1/0"}}).values["answers"] == [{"first": "yes"}]
