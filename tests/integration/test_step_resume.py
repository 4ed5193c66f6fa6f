"""`run_step` on S3 checkpoints: when an item counts as finished, across crashes and duplicate deliveries."""

from __future__ import annotations

import threading
import time
from typing import Any

from langchain_core.messages import AIMessage

from stepgraph.checkpoint import S3Saver
from stepgraph.graphs import fanout
from stepgraph.graphs.context import StepContext
from stepgraph.runtime.results import ResultStore
from stepgraph.runtime.step import run_step
from stepgraph.schemas import StepEvent, StepResult

ITEM = {"text": "the invoice total is wrong"}


class FakeModel:
    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, messages: list[Any]) -> AIMessage:
        self.calls += 1
        return AIMessage(content=f"reply to {messages[0].content[:24]}")


class PausesBeforeCheckpoint(S3Saver):
    """Holds the checkpoint of one step until `go` is set: another reader meanwhile sees that step's
    tasks with their writes saved and no checkpoint applying them."""

    def __init__(self, *args: Any, step: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step, self.reached, self.go = step, threading.Event(), threading.Event()

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if metadata.get("step") == self.step:
            self.reached.set()
            assert self.go.wait(30)
        return super().put(config, checkpoint, metadata, new_versions)


def event(run: str) -> StepEvent:
    return StepEvent(
        execution_id=f"arn:aws:states:us-east-1:123456789012:execution:stepgraph-graph-fanout:{run}",
        item_id="0",
        item=ITEM,
        graph="fanout",
    )


def step(ev: StepEvent, saver: S3Saver, s3: Any, bucket: str, model: FakeModel) -> StepResult:
    return run_step(
        ev,
        graph=fanout.build_graph().compile(checkpointer=saver),
        context=StepContext(model=model),
        item=ITEM,
        results=ResultStore(bucket, s3),
        remaining_s=lambda: 600.0,
        margin_s=1.0,
    )


def stored_state(s3: Any, bucket: str, ev: StepEvent) -> dict[str, Any]:
    import json

    key = ResultStore(bucket, s3).key(ev.execution_id, ev.item_id)
    return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["state"])


def assert_complete(state: dict[str, Any]) -> None:
    assert sorted(n.split(":")[0] for n in state["notes"]) == sorted(fanout.ANALYSTS), state
    assert state["synthesis"], state


def drop_checkpoints_from(saver: S3Saver, ev: StepEvent, step_: int) -> None:
    """What a crash after step `step_ - 1`'s writes, before its next checkpoint, leaves in S3."""
    for tup in list(saver.list({"configurable": {"thread_id": ev.thread_id}})):
        if tup.metadata["step"] >= step_:
            cid = tup.config["configurable"]["checkpoint_id"]
            keys = [saver.layout.checkpoint(ev.thread_id, "", cid)]
            keys += saver.s3.keys(saver.layout.writes(ev.thread_id, "", cid))
            saver.s3.delete(keys)


def test_a_crash_after_the_writes_resumes_instead_of_finishing_early(s3_client: Any, s3_bucket: str) -> None:
    ev, model, saver = event("crash"), FakeModel(), S3Saver(s3_bucket, client=s3_client)
    assert step(ev, saver, s3_client, s3_bucket, model).status == "done"
    drop_checkpoints_from(saver, ev, 1)  # left: the analysts' step with their three writes saved
    s3_client.delete_object(Bucket=s3_bucket, Key=ResultStore(s3_bucket, s3_client).key(ev.execution_id, "0"))
    out = step(ev, S3Saver(s3_bucket, client=s3_client), s3_client, s3_bucket, model)
    assert out.status == "done", out
    assert model.calls == 5  # only the synthesis ran again: the saved writes were applied, not redone
    assert_complete(stored_state(s3_client, s3_bucket, ev))


def test_a_twin_reading_mid_step_continues_the_item(s3_client: Any, s3_bucket: str) -> None:
    ev = event("twins")
    first_saver = PausesBeforeCheckpoint(s3_bucket, client=s3_client, step=1)
    first: list[StepResult] = []
    runner = threading.Thread(
        target=lambda: first.append(step(ev, first_saver, s3_client, s3_bucket, FakeModel()))
    )
    runner.start()
    try:
        assert first_saver.reached.wait(30)
        time.sleep(0.2)  # the analysts' writes are saved in the background as each one ends
        twin = step(ev, S3Saver(s3_bucket, client=s3_client), s3_client, s3_bucket, FakeModel())
    finally:
        first_saver.go.set()
        runner.join(30)
    assert twin.status == "done" and first and first[0].status == "done", (twin, first)
    assert_complete(stored_state(s3_client, s3_bucket, ev))
