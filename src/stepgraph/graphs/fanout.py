"""Example graph: fan out to parallel analysts, fan in with a reducer (no branch overwrites another).

Item: `{"text": "..."}` (a plain string item is the text). Result: one note per analyst and a synthesis.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from stepgraph.graphs.context import StepContext, item_text, text_of

ANALYSTS = ("facts", "risks", "questions")


class FanoutState(TypedDict, total=False):
    text: str
    input: str  # a plain (non-object) item
    notes: Annotated[list[str], operator.add]  # the reducer merges parallel branches
    synthesis: str


class AnalystInput(TypedDict):
    text: str
    angle: str


def dispatch(state: FanoutState) -> list[Send]:
    text = item_text(state, "fanout")
    return [Send("analyst", {"text": text, "angle": angle}) for angle in ANALYSTS]


def analyst(state: AnalystInput, runtime: Runtime[StepContext]) -> dict[str, Any]:
    reply = runtime.context.model.invoke(
        [HumanMessage(f"List the {state['angle']} in this text:\n{state['text']}")]
    )
    return {"notes": [f"{state['angle']}: {text_of(reply)}"]}


def synthesise(state: FanoutState, runtime: Runtime[StepContext]) -> dict[str, Any]:
    notes = "\n".join(sorted(state.get("notes", [])))
    reply = runtime.context.model.invoke([HumanMessage(f"Combine these notes into one paragraph:\n{notes}")])
    return {"synthesis": text_of(reply)}


def build_graph() -> StateGraph[Any, Any, Any, Any]:
    graph = StateGraph(FanoutState, context_schema=StepContext)
    graph.add_node("analyst", analyst)
    graph.add_node("synthesise", synthesise)
    graph.add_conditional_edges(START, dispatch, ["analyst"])
    graph.add_edge("analyst", "synthesise")
    graph.add_edge("synthesise", END)
    return graph
