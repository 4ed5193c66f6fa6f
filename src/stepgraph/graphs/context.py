"""How a node gets its chat model: LangGraph's runtime context, injected per step.

    def draft(state: State, runtime: Runtime[StepContext]) -> dict:
        reply = runtime.context.model.invoke([HumanMessage(...)])

The runtime builds the context (the routed, rate-limited, metered model) for each invocation; tests pass
a fake model. The context is not checkpointed, so resuming never needs it serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StepContext:
    model: Any  # a chat-model Runnable: .invoke(messages) -> AIMessage
    item_id: str = ""


def text_of(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):
        return " ".join(str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in content)
    return str(content)
