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

import math
import random
from collections.abc import Callable
from typing import Any

from stepgraph.graphs.context import StepContext
from stepgraph.limiter import RateLimited
from stepgraph.providers.errors import Throttled
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
) -> StepResult:
    """`graph` is compiled with the item's checkpointer; `item` is the resolved item."""
    config: dict[str, Any] = {
        "configurable": {"thread_id": event.thread_id},
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
        return _done(
            event, snapshot.values, results, steps=0, last_nodes=[]
        )  # finished earlier: say so again
    payload = None if started else graph_input(item)
    steps, last_nodes = 0, []
    try:
        for update in graph.stream(payload, config, stream_mode="updates", context=context):
            steps += 1
            last_nodes = [k for k in update if not k.startswith("__")]
            if remaining_s() < margin_s:
                return StepResult(status="running", steps=steps, last_nodes=last_nodes)
    except (Throttled, RateLimited) as exc:
        return StepResult(
            status="throttled",
            retry_after_s=throttled_wait_s(exc.retry_after_s, time_scale=time_scale),
            steps=steps,
            last_nodes=last_nodes,
        )
    snapshot = graph.get_state(config)
    if snapshot.tasks and not _interrupted(snapshot):
        return StepResult(status="running", steps=steps, last_nodes=last_nodes)
    return _done(
        event,
        snapshot.values,
        results,
        steps=steps,
        last_nodes=last_nodes,
        interrupted=_interrupted(snapshot),
    )


def _interrupted(snapshot: Any) -> bool:
    return any(getattr(t, "interrupts", ()) for t in getattr(snapshot, "tasks", ()))


def _done(
    event: StepEvent,
    values: Any,
    results: ResultStore,
    *,
    steps: int,
    last_nodes: list[str],
    interrupted: bool = False,
) -> StepResult:
    body = {"item_id": event.item_id, "graph": event.graph, "interrupted": interrupted, "state": values}
    ref = results.put(event.execution_id, event.item_id, body)
    return StepResult(status="done", steps=steps, last_nodes=last_nodes, result_ref=ref)
