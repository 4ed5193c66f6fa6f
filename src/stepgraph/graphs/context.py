"""How a node gets its chat model: LangGraph's runtime context, injected per step.

    def draft(state: State, runtime: Runtime[StepContext]) -> dict:
        reply = runtime.context.model.invoke([HumanMessage(...)])
        label = runtime.context.model_for("fast").with_structured_output(Label).invoke(...)

The runtime builds the context (the routed, rate-limited, metered model) for each invocation; tests pass
a fake model. The context is not checkpointed, so resuming never needs it serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepgraph.errors import InvalidInput


class UnknownRole(InvalidInput):
    """A node asked for a model role the graph does not declare."""

    code = "StepGraph.UnknownRole"


@dataclass
class StepContext:
    """`model`: the default role's chat model; `models`: every configured role's (the default included);
    `roles`: the roles the graph declares (None: any)."""

    model: Any  # a chat model: .invoke(messages) -> AIMessage, .bind_tools, .with_structured_output
    item_id: str = ""
    models: dict[str, Any] = field(default_factory=dict)
    roles: tuple[str, ...] | None = None

    def model_for(self, role: str) -> Any:
        """The chat model of `role` (its own chain, limiter routes and usage records); a role the run
        does not configure is served by the default model."""
        if self.roles is not None and role not in self.roles:
            raise UnknownRole(
                f"the graph asked for model role {role!r}, which it does not declare",
                hint=f"declared: {', '.join(self.roles)} (STEPGRAPH_GRAPH_ROLES)",
            )
        return self.models.get(role, self.model)


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
