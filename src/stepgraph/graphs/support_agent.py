"""Example graph: a support agent that classifies a ticket, then answers it with two tools.

Item: `{"text": "..."}` (the demo's tickets). `classify` asks the `fast` role's model for a structured
`TicketClass` (`with_structured_output`); `agent` is LangGraph's prebuilt ReAct agent over the default
model with two tools, `lookup_order` and `refund_policy` (it may call both at once); `finish` keeps the
agent's last reply. Every model call is routed, rate-limited and metered; the agent's supersteps are
checkpointed like any node's, so a throttled call resumes inside the loop.
Result: `category`, `urgent`, `answer` and the whole conversation in `messages` (structured JSON).
Settings (`config.graph_config`): `tone` (default "friendly").
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from stepgraph.graphs.context import StepContext, item_text, text_of

CATEGORIES = ("billing", "login", "refund", "other")
REFUND_DAYS = {"billing": 30, "refund": 30, "login": 0, "other": 14}


class TicketClass(BaseModel):
    """How a support ticket is classified."""

    category: Literal["billing", "login", "refund", "other"] = Field(description="what the ticket is about")
    urgent: bool = Field(description="whether the customer needs an answer today")


class SupportConfig(TypedDict, total=False):
    tone: str


CONFIG_SCHEMA = SupportConfig  # `config.graph_config` is checked against this before the item runs


class SupportState(TypedDict, total=False):
    text: str
    category: str
    urgent: bool
    messages: Annotated[list[AnyMessage], add_messages]
    answer: str


@tool
def lookup_order(order_id: int) -> dict[str, Any]:
    """Look up an order by its number: its status and the days since it was placed."""
    digest = int(hashlib.sha256(str(order_id).encode()).hexdigest()[:8], 16)
    return {
        "order_id": order_id,
        "status": ("shipped", "delayed", "delivered")[digest % 3],
        "days": digest % 40,
    }


@tool
def refund_policy(category: str) -> str:
    """The refund policy for a kind of ticket (billing, login, refund or other)."""
    days = REFUND_DAYS.get(category, REFUND_DAYS["other"])
    return f"{category}: refunds within {days} days of purchase" if days else f"{category}: no refunds apply"


TOOLS = [lookup_order, refund_policy]


def classify(state: SupportState, runtime: Runtime[StepContext]) -> dict[str, Any]:
    text = item_text(state, "support_agent")
    label: Any = (
        runtime.context.model_for("fast")
        .with_structured_output(TicketClass)
        .invoke([HumanMessage(f"Classify this support ticket ({', '.join(CATEGORIES)}):\n\n{text}")])
    )
    tone = (get_config().get("configurable") or {}).get("tone", "friendly")  # config.graph_config
    ask = (
        f"A {label.category} ticket{' (urgent)' if label.urgent else ''}. Use lookup_order and "
        f"refund_policy, then answer the customer in a {tone} tone.\n\n{text}"
    )
    return {"category": label.category, "urgent": label.urgent, "messages": [HumanMessage(ask)]}


def _agent_model(state: Any, runtime: Runtime[StepContext]) -> Any:
    return runtime.context.model.bind_tools(TOOLS)


def finish(state: SupportState) -> dict[str, Any]:
    return {"answer": text_of(state["messages"][-1])}


def build_graph() -> StateGraph[Any, Any, Any, Any]:
    with warnings.catch_warnings():
        # The prebuilt agent is deprecated in favour of `langchain.agents`, which stepgraph does not ship.
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import create_react_agent

        agent = create_react_agent(_agent_model, TOOLS, context_schema=StepContext)
    graph = StateGraph(SupportState, context_schema=StepContext)
    graph.add_node("classify", classify)
    graph.add_node("agent", agent)
    graph.add_node("finish", finish)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", "agent")
    graph.add_edge("agent", "finish")
    graph.add_edge("finish", END)
    return graph
