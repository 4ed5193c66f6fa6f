"""One graph-step invocation: resume the item's thread, run supersteps, return a small status.

Stops between supersteps when the Lambda's time runs low (`running`: the state machine calls again),
when a model call must wait longer than the step may (`throttled` with `retry_after_s`), or when the
graph ends (`done`, the final state written to S3). Everything else a node raises propagates as a
typed error; its checkpoint keeps the finished nodes' writes, so the next call resumes at the failure.

"Finished" means the newest checkpoint has no tasks at all. `snapshot.next` is not enough: it leaves out tasks
whose writes are saved, so a checkpoint read after its tasks' writes but before the next checkpoint (a crash
there, or a duplicate delivery reading mid-step) has an empty `next` and more work to apply.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stepgraph.graphs.context import StepContext
from stepgraph.limiter import RateLimited
from stepgraph.providers.errors import Throttled
from stepgraph.review.store import ReviewStore
from stepgraph.runtime.results import ResultStore
from stepgraph.schemas import StepEvent, StepResult
from stepgraph.usage.attempt import AttemptContext

# A wait of an hour or more is a daily quota (the next UTC day): spread the wake-ups over up to five
# minutes so a whole batch does not call the provider at 00:00:00 at once.
LONG_WAIT_S = 3600.0
DAY_JITTER_S = 300.0


def throttled_wait_s(wait: float, *, time_scale: float = 1.0, rng: random.Random | None = None) -> int:
    """Seconds for the state machine's Wait: whole, never 0 (the loop would spin), jittered when long."""
    if wait >= LONG_WAIT_S * time_scale:
        wait += (rng or random).uniform(0, DAY_JITTER_S * time_scale)
    return max(1, math.ceil(wait))


def wait_left(exc: Throttled | RateLimited) -> float:
    """What is left of a refusal's wait when the step returns. A branch refused at its slot raises at
    once, but the superstep ends only when its siblings do: one sleeping to its own slot (up to the
    step's in-Lambda wait) would otherwise add its sleep to the state machine's Wait. Found when a
    day's wait, counted from the sibling's wake-up, put an item's calls at the day's last instant."""
    return max(0.0, exc.until - time.monotonic())


def graph_input(item: Any) -> dict[str, Any]:
    return dict(item) if isinstance(item, dict) else {"input": item}


def run_step(
    event: StepEvent,
    *,
    graph: Any,
    context: StepContext,
    item: Any,
    results: ResultStore,
    remaining_s: Callable[[], float],
    margin_s: float,
    time_scale: float = 1.0,
    reviews: ReviewStore | None = None,
    graph_config: dict[str, Any] | None = None,
) -> StepResult:
    """`graph` is compiled with the item's checkpointer; `item` is the resolved item; `graph_config` (the
    run's `config.graph_config`) joins the graph's `configurable` beside the thread id. A graph with
    async nodes runs on an event loop (`astream`), others synchronously.

    An answer (`event.review`) is applied only while the interrupts it answers are the ones pending: a
    retried or repeated call after the answer was applied finds other interrupts (or none) and goes on
    from the checkpoint, so a person's answer reaches the graph exactly once."""
    config: dict[str, Any] = {
        "configurable": {**(graph_config or {}), "thread_id": event.thread_id},
        "metadata": AttemptContext(
            execution_id=event.execution_id,
            item_id=event.item_id,
            thread_id=event.thread_id,
            graph=event.graph,
        ).run_metadata(),
        "recursion_limit": 100,
    }
    snapshot = graph.get_state(config)
    started = bool(snapshot.values) or bool(snapshot.tasks)
    if started and not snapshot.tasks:
        # finished earlier: say so again
        return _done(event, snapshot.values, results, steps=0, last_nodes=[], reviews=reviews)
    payload: Any = None if started else graph_input(item)
    pending = _pending(snapshot)
    if pending:
        answers = event.review.answers if event.review else {}
        if set(answers) != {i["id"] for i in pending}:
            # Still waiting (or an answer to an earlier round): park again, run nothing, call no model.
            return _interrupted_result(event, pending, reviews, steps=0, last_nodes=[])
        from langgraph.types import Command

        payload = Command(resume=dict(answers))
    progress = _Progress(remaining_s, margin_s)
    try:
        if _has_async_nodes(graph):
            ran_out = asyncio.run(_arun(graph, payload, config, context, progress))
        else:
            ran_out = _run(graph, payload, config, context, progress)
    except (Throttled, RateLimited) as exc:
        return StepResult(
            status="throttled",
            retry_after_s=throttled_wait_s(wait_left(exc), time_scale=time_scale),
            steps=progress.steps,
            last_nodes=progress.last_nodes,
        )
    steps, last_nodes = progress.steps, progress.last_nodes
    if ran_out:
        return StepResult(status="running", steps=steps, last_nodes=last_nodes)
    snapshot = graph.get_state(config)
    pending = _pending(snapshot)
    if pending:
        return _interrupted_result(event, pending, reviews, steps=steps, last_nodes=last_nodes)
    if snapshot.tasks:
        return StepResult(status="running", steps=steps, last_nodes=last_nodes)
    return _done(event, snapshot.values, results, steps=steps, last_nodes=last_nodes, reviews=reviews)


@dataclass
class _Progress:
    """The supersteps a step ran, and whether the Lambda's time ran low (`margin_s` left) after one."""

    remaining_s: Callable[[], float]
    margin_s: float
    steps: int = 0
    last_nodes: list[str] = field(default_factory=list)

    def saw(self, update: dict[str, Any]) -> bool:
        """Count a superstep; True when the step must stop here (its state is checkpointed)."""
        self.steps += 1
        self.last_nodes = [k for k in update if not k.startswith("__")]
        return self.remaining_s() < self.margin_s


def _has_async_nodes(graph: Any) -> bool:
    """A node given as an `async def` has no synchronous function: only the async API can run it."""
    nodes = getattr(graph, "builder", None)
    specs = getattr(nodes, "nodes", {}) if nodes is not None else {}
    return any(getattr(spec.runnable, "func", True) is None for spec in specs.values())


def _run(graph: Any, payload: Any, config: Any, context: Any, progress: _Progress) -> bool:
    """Supersteps until the graph stops; True when the time ran low first."""
    for update in graph.stream(payload, config, stream_mode="updates", context=context):
        if progress.saw(update):
            return True
    return False


async def _arun(graph: Any, payload: Any, config: Any, context: Any, progress: _Progress) -> bool:
    """`_run` for graphs with async nodes."""
    async for update in graph.astream(payload, config, stream_mode="updates", context=context):
        if progress.saw(update):
            return True
    return False


def _pending(snapshot: Any) -> list[dict[str, Any]]:
    """Every interrupt of the newest checkpoint, with the node that raised it (several in one superstep)."""
    return [
        {"id": i.id, "node": t.name, "value": i.value}
        for t in getattr(snapshot, "tasks", ())
        for i in getattr(t, "interrupts", ())
    ]


def _interrupted_result(
    event: StepEvent,
    pending: list[dict[str, Any]],
    reviews: ReviewStore | None,
    *,
    steps: int,
    last_nodes: list[str],
) -> StepResult:
    if reviews is None:
        raise RuntimeError("the graph stopped at interrupt() but no review store was given")
    ref = reviews.record_interrupts(event.execution_id, event.item_id, event.graph, pending)
    return StepResult(status="interrupted", steps=steps, last_nodes=last_nodes, review_ref=ref)


def _done(
    event: StepEvent,
    values: Any,
    results: ResultStore,
    *,
    steps: int,
    last_nodes: list[str],
    reviews: ReviewStore | None = None,
) -> StepResult:
    body: dict[str, Any] = {"item_id": event.item_id, "graph": event.graph, "state": values}
    if event.review is not None and reviews is not None:  # only reviewed items pay for the read
        body["review"] = reviews.summary(event.execution_id, event.item_id)
    ref = results.put(event.execution_id, event.item_id, body)
    return StepResult(status="done", steps=steps, last_nodes=last_nodes, result_ref=ref)
