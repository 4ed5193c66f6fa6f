"""A throttled step's Wait is what is left of the refusal when the step returns: a branch refused at
once waits for its siblings (one sleeping to its own slot), and that time is not added to the Wait."""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph

from stepgraph.graphs.context import StepContext
from stepgraph.limiter import RateLimited
from stepgraph.providers import Throttled
from stepgraph.runtime.step import run_step
from stepgraph.schemas import StepEvent

SIBLING_S = 1.2  # the sibling's sleep: the refused branch's exception surfaces after it


class State(TypedDict, total=False):
    notes: Annotated[list[str], operator.add]


def graph(refusal: Exception) -> Any:
    def refused(state: State) -> dict[str, Any]:
        raise refusal

    def sleeps_to_its_slot(state: State) -> dict[str, Any]:
        time.sleep(SIBLING_S)
        return {"notes": ["slept"]}

    g = StateGraph(State)
    g.add_node("refused", refused)
    g.add_node("sleeps", sleeps_to_its_slot)
    g.add_edge(START, "refused")
    g.add_edge(START, "sleeps")
    return g.compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize(
    "make", [lambda s: Throttled(s, "rpd"), lambda s: RateLimited(s, limit="rpd")], ids=["router", "limiter"]
)
def test_the_wait_counts_from_the_refusal_not_from_the_steps_end(make: Any) -> None:
    wait_s = 2.5
    event = StepEvent(execution_id="arn:x:run", item_id="0", item={}, graph="g")
    result = run_step(
        event,
        graph=graph(make(wait_s)),
        context=StepContext(model=None),
        item={},
        results=None,  # type: ignore[arg-type]  # a throttled step writes no result
        remaining_s=lambda: 600.0,
        margin_s=1.0,
    )
    assert result.status == "throttled"
    # 2.5 s from the refusal, 1.2 s of it spent on the sibling: 1.3 s left, a whole 2 s Wait (not 3).
    assert result.retry_after_s == 2
