"""Example graph: classify a ticket, then a person approves the labels the model is unsure of.

Item: `{"text": "..."}`. The `review` node stops at `interrupt(payload)`; on Step Functions the item parks on
a callback task until someone answers (`stepgraph resume`, the review page, or `demo --auto-review`).
Answers: `{"action": "approve"}`, `{"action": "edit", "label": "billing"}` or `{"action": "reject"}`.
Result: `label`, `confidence`, `review` (the person's answer, when asked) and `final_label` (None if rejected).
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from stepgraph.graphs.context import StepContext, text_of

LABELS = ("billing", "bug", "account", "other")
CONFIDENT = 0.8  # at or above this the model's label stands without a person


class TriageState(TypedDict, total=False):
    text: str
    label: str
    confidence: float
    review: Any
    final_label: str | None


def parse_label(reply: str) -> tuple[str, float]:
    """`label, confidence` from a reply such as "billing 0.93"; an unclear reply is `other` at 0."""
    words = reply.lower()
    found = sorted((words.find(lab), lab) for lab in LABELS if lab in words)
    label = found[0][1] if found else "other"  # the label the reply names first
    number = re.search(r"\b(0(?:\.\d+)?|1(?:\.0+)?)\b", words)
    return label, float(number.group(1)) if number else 0.0


def classify(state: TriageState, runtime: Runtime[StepContext]) -> dict[str, Any]:
    reply = runtime.context.model.invoke(
        [
            HumanMessage(
                f"Classify this support ticket as one of {', '.join(LABELS)}, then give your confidence "
                f"from 0 to 1. Answer as: <label> <confidence>\n\n{state['text']}"
            )
        ]
    )
    label, confidence = parse_label(text_of(reply))
    return {"label": label, "confidence": confidence}


def route(state: TriageState) -> str:
    return "accept" if state["confidence"] >= CONFIDENT else "review"


def review(state: TriageState) -> dict[str, Any]:
    # No model call here: the answer arrives when the item resumes, as interrupt()'s return value.
    answer = interrupt(
        {
            "question": f"Is {state['label']!r} the right label?",
            "text": state["text"],
            "label": state["label"],
            "confidence": state["confidence"],
            "answers": ["approve", "edit (with label)", "reject"],
        }
    )
    action = answer.get("action") if isinstance(answer, dict) else answer
    if action == "edit" and isinstance(answer, dict) and answer.get("label"):
        final: str | None = str(answer["label"])
    elif action == "reject":
        final = None
    else:
        final = state["label"]
    return {"review": answer, "final_label": final}


def accept(state: TriageState) -> dict[str, Any]:
    return {"final_label": state["label"]}


def build_graph() -> StateGraph[Any, Any, Any, Any]:
    graph = StateGraph(TriageState, context_schema=StepContext)
    graph.add_node("classify", classify)
    graph.add_node("review", review)
    graph.add_node("accept", accept)
    graph.add_edge(START, "classify")
    graph.add_conditional_edges("classify", route, ["accept", "review"])
    graph.add_edge("review", END)
    graph.add_edge("accept", END)
    return graph
