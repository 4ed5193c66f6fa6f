"""How a node gets its chat model: LangGraph's runtime context, injected per step.

    def draft(state: State, runtime: Runtime[StepContext]) -> dict:
        reply = runtime.context.model.invoke([HumanMessage(...)])

The runtime builds the context (the routed, rate-limited, metered model) for each invocation; tests pass
a fake model. The context is not checkpointed, so resuming never needs it serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stepgraph.errors import InvalidInput


@dataclass
class StepContext:
    model: Any  # a chat-model Runnable: .invoke(messages) -> AIMessage
    item_id: str = ""


def text_of(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):
        return " ".join(str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in content)
    return str(content)


class MissingField(InvalidInput):
    """An item lacks a field its graph needs (the item fails, the batch goes on)."""

    code = "StepGraph.MissingField"


def item_text(state: Any, graph: str) -> str:
    """The item's `text`, or a plain item (a line that is a JSON string becomes `{"input": value}`)."""
    for name in ("text", "input"):
        value = state.get(name) if isinstance(state, dict) else None
        if isinstance(value, str) and value.strip():
            return value
    got = sorted(state) if isinstance(state, dict) else type(state).__name__
    raise MissingField(
        f"graph {graph} needs the item's field 'text' (a non-empty string); the item has {got}",
        hint='give each item {"text": "..."} or a JSON string',
    )
