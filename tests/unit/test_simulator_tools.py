"""The simulator's tool calls and structured replies: deterministic, valid for the schema, and faulty on demand."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from stepgraph.local.simulator.completions import sse_events
from stepgraph.local.simulator.tools import MALFORMED_ARGS, instance_of, structured


class Order(BaseModel):
    """Look up an order."""

    order_id: int
    region: Literal["eu", "us"]
    tags: list[str]
    note: str | None = None


class Policy(BaseModel):
    """The refund policy."""

    category: str


TOOLS = [convert_to_openai_tool(Order), convert_to_openai_tool(Policy)]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_tool_arguments_are_a_valid_instance_of_the_schema_and_deterministic() -> None:
    body = {"tools": TOOLS, "messages": user("order 4711 please")}
    first = structured(body, body["messages"]).tool_calls
    assert [c.name for c in first] == ["Order"]  # no tool named: the first one
    order = Order.model_validate_json(first[0].arguments)
    assert order.order_id == 4711 and order.region == "eu"
    assert structured(body, body["messages"]).tool_calls == first


def test_named_tools_are_called_in_parallel_unless_the_request_forbids_it() -> None:
    messages = user("use Order and Policy")
    assert [c.name for c in structured({"tools": TOOLS}, messages).tool_calls] == ["Order", "Policy"]
    single = structured({"tools": TOOLS, "parallel_tool_calls": False}, messages).tool_calls
    assert [c.name for c in single] == ["Order"]


def test_tool_choice_and_tool_results_decide_whether_a_tool_is_called() -> None:
    answered = [*user("Order"), {"role": "assistant", "content": None}, {"role": "tool", "content": "ok"}]
    assert structured({"tools": TOOLS}, answered).tool_calls == []  # after the results: text
    forced = {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "Policy"}}}
    assert [c.name for c in structured(forced, answered).tool_calls] == ["Policy"]
    assert structured({"tools": TOOLS, "tool_choice": "none"}, user("Order")).tool_calls == []


def test_a_directive_picks_tools_and_arguments_and_faults_break_them() -> None:
    text = (
        'sim-tool: Policy {"category": "refund"}\nsim-tool: Order {"order_id": 1, "region": "us", "tags": []}'
    )
    calls = structured({"tools": TOOLS}, user(text)).tool_calls
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("Policy", {"category": "refund"}),
        ("Order", {"order_id": 1, "region": "us", "tags": []}),
    ]
    broken = structured({"tools": TOOLS}, user("Order\nsim-fault: malformed-tool-args")).tool_calls
    assert broken[0].arguments == MALFORMED_ARGS
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken[0].arguments)


def test_json_schema_replies_validate_and_invalid_json_is_a_fault() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "Order", "schema": Order.model_json_schema()}}
    reply = structured({"response_format": fmt}, user("order 12")).json_text
    assert reply is not None and Order.model_validate_json(reply).order_id == 12
    given = structured({"response_format": fmt}, user('sim-json: {"order_id": 3}')).json_text
    assert given == '{"order_id": 3}'
    bad = structured({"response_format": fmt}, user("sim-fault: invalid-json")).json_text
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad or "")
    assert structured({}, user("plain")).json_text is None


def test_streamed_tool_call_deltas_reassemble_to_the_same_calls() -> None:
    calls = structured({"tools": TOOLS}, user("Order and Policy")).tool_calls
    events = list(
        sse_events("gen-1", "m", "", {"total_tokens": 1}, finish_reason="tool_calls", tool_calls=calls)
    )
    chunks = [json.loads(e[6:]) for e in events if e.startswith("data: {")]
    merged: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls", []):
                slot = merged.setdefault(delta["index"], {"name": "", "arguments": ""})
                slot["name"] += delta.get("function", {}).get("name", "")
                slot["arguments"] += delta["function"]["arguments"]
    assert [(m["name"], m["arguments"]) for m in merged.values()] == [(c.name, c.arguments) for c in calls]
    assert len(chunks) > 2 * len(calls)  # each call's arguments arrive in pieces
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "tool_calls" for c in chunks)


def test_instance_of_follows_refs_unions_and_defaults() -> None:
    class Inner(BaseModel):
        size: float

    class Outer(BaseModel):
        inner: Inner
        maybe: int | None
        mode: str = "fast"

    value = instance_of(Outer.model_json_schema(), ["2.5", "3"])
    assert Outer.model_validate(value) == Outer(inner=Inner(size=2.5), maybe=3, mode="fast")
