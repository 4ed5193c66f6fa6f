"""S3Saver under real graphs: resume at the failed node, no lost writes, clear errors."""

from __future__ import annotations

import operator
import threading
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import boto3
import pytest
from langgraph.graph import END, START, StateGraph

from stepgraph.checkpoint import CheckpointConflict, CheckpointStoreError, CorruptCheckpoint, S3Saver


class State(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]


def build(
    calls: dict[str, int], fail: dict[str, bool], before_failing: Callable[[], None] = lambda: None
) -> StateGraph:
    def node(name: str) -> Any:
        def run(state: State) -> dict:
            calls[name] = calls.get(name, 0) + 1
            if fail.get(name):
                before_failing()
                raise RuntimeError(f"{name} crashed")
            return {"notes": [f"{name}:{state['topic']}"]}

        return run

    g = StateGraph(State)
    for name in ("plan", "left", "right", "merge"):
        g.add_node(name, node(name))
    g.add_edge(START, "plan")
    g.add_edge("plan", "left")
    g.add_edge("plan", "right")  # parallel fan-out
    g.add_edge(["left", "right"], "merge")
    g.add_edge("merge", END)
    return g


def test_resume_runs_only_the_failed_branch(s3_client: Any, s3_bucket: str) -> None:
    calls: dict[str, int] = {}
    fail = {"right": True}
    saver = S3Saver(s3_bucket, client=s3_client)
    config = {"configurable": {"thread_id": "item-1"}}

    def left_is_saved() -> None:
        # A sibling that finishes after another has failed may not have its writes saved (LangGraph ends
        # the step at the failure; on a loaded machine `left` then ran again on resume): fail only once
        # `left`'s write is in S3, which is what this test is about.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            saved = saver.get_tuple(config)
            if saved and any(v == ["left:t"] for _, _, v in saved.pending_writes or []):
                return
            time.sleep(0.01)
        raise AssertionError("left's write was never saved")

    graph = build(calls, fail, left_is_saved).compile(checkpointer=saver)
    with pytest.raises(RuntimeError, match="right crashed"):
        graph.invoke({"topic": "t", "notes": []}, config)
    assert calls == {"plan": 1, "left": 1, "right": 1}
    fail["right"] = False
    # A fresh saver object (a new Lambda) resumes from S3 alone.
    graph = build(calls, fail).compile(checkpointer=S3Saver(s3_bucket, client=s3_client))
    out = graph.invoke(None, config)
    assert calls == {"plan": 1, "left": 1, "right": 2, "merge": 1}
    assert sorted(out["notes"]) == ["left:t", "merge:t", "plan:t", "right:t"]


async def test_async_graph_round_trip(s3_client: Any, s3_bucket: str) -> None:
    calls: dict[str, int] = {}
    graph = build(calls, {}).compile(checkpointer=S3Saver(s3_bucket, client=s3_client))
    config = {"configurable": {"thread_id": "async-1"}}
    out = await graph.ainvoke({"topic": "a", "notes": []}, config)
    assert len(out["notes"]) == 4
    history = [s async for s in graph.aget_state_history(config)]
    assert len(history) >= 4 and history[0].values["notes"] == out["notes"]


def test_concurrent_writers_never_lose_a_write(moto_aws: None) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="conc")
    saver_config = {"configurable": {"thread_id": "shared", "checkpoint_ns": ""}}
    base = S3Saver("conc", client=boto3.client("s3", region_name="us-east-1"))
    from langgraph.checkpoint.base import empty_checkpoint

    cp = empty_checkpoint()
    stored = base.put(saver_config, cp, {"source": "input", "step": -1}, {})
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        saver = S3Saver("conc", client=boto3.session.Session().client("s3", region_name="us-east-1"))
        try:
            saver.put_writes(stored, [("notes", f"w{i}")], task_id=f"task-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    tup = base.get_tuple(stored)
    assert sorted(v for _, _, v in tup.pending_writes) == sorted(f"w{i}" for i in range(16))


def test_a_second_checkpoint_with_the_same_id_is_a_typed_conflict(s3_client: Any, s3_bucket: str) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    saver = S3Saver(s3_bucket, client=s3_client)
    cp = empty_checkpoint()
    cfg = {"configurable": {"thread_id": "x", "checkpoint_ns": ""}}
    saver.put(cfg, cp, {"step": 1}, {})
    saver.put(cfg, cp, {"step": 1}, {})  # the same bytes again: a retried Lambda, fine
    with pytest.raises(CheckpointConflict, match="already exists with other content"):
        saver.put(cfg, cp, {"step": 2}, {})


def test_missing_bucket_and_corrupt_objects_name_what_and_where(s3_client: Any, s3_bucket: str) -> None:
    missing = S3Saver("no-such-bucket", client=s3_client)
    with pytest.raises(CheckpointStoreError, match=r"s3://no-such-bucket/checkpoints/ \(NoSuchBucket\)"):
        missing.get_tuple({"configurable": {"thread_id": "t"}})
    saver = S3Saver(s3_bucket, client=s3_client)
    calls: dict[str, int] = {}
    build(calls, {}).compile(checkpointer=saver).invoke(
        {"topic": "c", "notes": []}, {"configurable": {"thread_id": "c1"}}
    )
    newest = saver.s3.keys(saver.layout.checkpoints("c1", ""), limit=1)[0]
    s3_client.put_object(Bucket=s3_bucket, Key=newest, Body=b"\x00garbage")
    with pytest.raises(CorruptCheckpoint, match=newest):
        saver.get_tuple({"configurable": {"thread_id": "c1"}})


def test_thread_ids_with_slashes_stay_apart(s3_client: Any, s3_bucket: str) -> None:
    calls: dict[str, int] = {}
    saver = S3Saver(s3_bucket, client=s3_client)
    graph = build(calls, {}).compile(checkpointer=saver)
    for tid in ("exec/1", "exec/10", f"exec/{uuid.uuid4()}"):
        graph.invoke({"topic": tid, "notes": []}, {"configurable": {"thread_id": tid}})
    got = graph.get_state({"configurable": {"thread_id": "exec/1"}}).values["notes"]
    assert "plan:exec/1" in got and all("exec/10" not in n for n in got)
