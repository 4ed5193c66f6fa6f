"""Example graph: draft → critique → revise, looping until the critique approves or `max_rounds`.

Item: `{"text": "...", "max_rounds": 2}` (max_rounds optional; a plain string item is the text). Result: the final draft, the rounds
taken and whether the critique approved it.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from stepgraph.graphs.context import StepContext, item_text, text_of

DEFAULT_MAX_ROUNDS = 2


class DocumentState(TypedDict, total=False):
    text: str
    input: str  # a plain (non-object) item
    max_rounds: int
    draft: str
    critique: str
    rounds: int
    approved: bool


def draft(state: DocumentState, runtime: Runtime[StepContext]) -> dict[str, Any]:
    text = item_text(state, "document_pipeline")
    reply = runtime.context.model.invoke(
        [
            SystemMessage("You write short, faithful summaries."),
            HumanMessage(f"Summarise this text:\n{text}"),
        ]
    )
    return {"text": text, "draft": text_of(reply), "rounds": 0}


def critique(state: DocumentState, runtime: Runtime[StepContext]) -> dict[str, Any]:
    reply = text_of(
        runtime.context.model.invoke(
            [
                SystemMessage(
                    "You review summaries. Answer with APPROVED on the first line if the summary is good."
                ),
                HumanMessage(f"Summary to review:\n{state['draft']}\n\nOriginal:\n{state['text']}"),
            ]
        )
    )
    return {"critique": reply, "approved": reply.strip().upper().startswith("APPROVED")}


def revise(state: DocumentState, runtime: Runtime[StepContext]) -> dict[str, Any]:
    reply = runtime.context.model.invoke(
        [
            HumanMessage(
                f"Revise the summary using the critique.\nSummary:\n{state['draft']}\nCritique:\n{state['critique']}"
            )
        ]
    )
    return {"draft": text_of(reply), "rounds": state.get("rounds", 0) + 1}


def after_critique(state: DocumentState) -> str:
    if state.get("approved") or state.get("rounds", 0) >= state.get("max_rounds", DEFAULT_MAX_ROUNDS):
        return END
    return "revise"


def build_graph() -> StateGraph[Any, Any, Any, Any]:
    graph = StateGraph(DocumentState, context_schema=StepContext)
    graph.add_node("draft", draft)
    graph.add_node("critique", critique)
    graph.add_node("revise", revise)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "critique")
    graph.add_conditional_edges("critique", after_critique, ["revise", END])
    graph.add_edge("revise", "critique")
    return graph
