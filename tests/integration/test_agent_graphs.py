"""Tool-using, structured, async and streaming graphs through graph-step, in-process, against moto and the
simulator: the support_agent example, a user's async graph with its own settings, and model roles."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from langchain_core.messages import AIMessage, ToolMessage, messages_from_dict
from moto import mock_aws

from stepgraph import resources
from stepgraph.errors import InvalidInput
from stepgraph.limiter.table import ensure_limiter_table
from stepgraph.local.lambdas import cold_start, invoke
from stepgraph.local.simulator import DEV_KEY, SimulatorHandle
from tests.fixtures.aws import usage_records

README = Path(__file__).resolve().parents[2] / "README.md"
EXEC = "arn:aws:states:us-east-1:123456789012:execution:stepgraph-graph-fanout:run-7"
TICKET = "An upset customer writes about refund: ticket #1002. They waited 9 days."


@pytest.fixture
def readme_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The README's "Your own graph" code, as written, importable as `readme_triage`."""
    section = re.search(
        r"<!-- section:own-graph -->(.*?)<!-- /section:own-graph -->", README.read_text(), re.S
    )
    assert section, "README.md has no own-graph section"
    (block,) = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    (tmp_path / "readme_triage.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "readme_triage", raising=False)
    return "readme_triage:build_graph"


@pytest.fixture
def stack(
    simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch, readme_graph: str
) -> Iterator[dict[str, Any]]:
    env = {
        "STEPGRAPH_BUCKET": "stepgraph-data",
        "STEPGRAPH_LIMITER_TABLE": "stepgraph-limiter",
        "STEPGRAPH_TIME_SCALE": "0.05",
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "STEPGRAPH_OPENROUTER_BASE_URL": simulator.base_url,
        "STEPGRAPH_OLLAMA_BASE_URL": simulator.ollama_base_url,
        "OPENROUTER_API_KEY": f"dev={DEV_KEY}",
        "OLLAMA_API_KEY": f"dev={DEV_KEY}",
        "STEPGRAPH_GRAPHS": json.dumps(
            {"user_async": "tests.fixtures.agent_graphs:build_graph", "triage": readme_graph}
        ),
        "STEPGRAPH_GRAPH_ROLES": json.dumps({"triage": ["default", "fast"]}),
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cold_start()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="stepgraph-data")
        ensure_limiter_table(boto3.client("dynamodb", region_name="us-east-1"), "stepgraph-limiter")
        yield {"s3": s3, "sim": simulator}


def run_item(graph: str, item: Any, config: dict[str, Any] | None = None) -> dict[str, Any]:
    event = {"execution_id": EXEC, "item_id": "i1", "item": item, "graph": graph, "config": config or {}}
    for _ in range(20):
        result = invoke(resources.GRAPH_STEP_FUNCTION, event)
        if result["status"] == "done":
            return result
        assert result["status"] in ("running", "throttled"), result
        if result["status"] == "throttled":
            import time

            time.sleep(result["retry_after_s"])
    raise AssertionError("the item did not finish")


def result_body(stack: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    raw = stack["s3"].get_object(Bucket="stepgraph-data", Key=result["result_ref"]["key"])["Body"].read()
    return json.loads(raw)


def test_support_agent_classifies_calls_both_tools_and_answers_with_roles(stack: dict[str, Any]) -> None:
    config = {
        "models": {"default": ["openrouter:openai/gpt-oss-120b:free"], "fast": ["ollama:gpt-oss:120b"]},
        "graph_config": {"tone": "calm"},
    }
    body = result_body(stack, run_item("support_agent", {"text": TICKET}, config))
    state = body["state"]
    assert state["category"] in ("billing", "login", "refund", "other") and isinstance(state["urgent"], bool)
    # The result reads back into LangChain messages: the agent called both tools in one turn, then answered.
    messages = messages_from_dict(state["messages"])
    calls = [c["name"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    assert sorted(calls) == ["lookup_order", "refund_policy"]
    tools = {m.name: m.content for m in messages if isinstance(m, ToolMessage)}
    assert "1002" in tools["lookup_order"] and "within" in tools["refund_policy"]
    assert "calm tone" in messages[0].content and state["answer"] == messages[-1].content
    records, sent = usage_records(stack["s3"]), stack["sim"].requests()
    assert len(records) == len(sent) == 3  # classify (fast), the agent's tool turn, its answer
    assert [(r["role"], r["provider"]) for r in records] == [
        ("fast", "ollama"),
        ("default", "openrouter"),
        ("default", "openrouter"),
    ]
    assert all(r["status"] == "ok" and r["generation_id"] for r in records)


def test_a_users_async_graph_with_tools_structured_output_streaming_and_settings(
    stack: dict[str, Any],
) -> None:
    result = run_item("user_async", {"text": "Rate 7 of 10"}, {"graph_config": {"audience": "ops"}})
    state = result_body(stack, result)["state"]
    assert state["verdict"] == {"score": 7, "ok": True}  # a pydantic model, stored as its model_dump
    assert state["tool_names"] == ["add"] and state["audience"] == "ops"
    assert state["streamed"] == "one two three four" and state["chunks"] > 3
    records = usage_records(stack["s3"])
    assert len(records) == len(stack["sim"].requests()) == 3
    streamed = [r for r in records if r["streamed"]]
    assert len(streamed) == 1 and streamed[0]["generation_id"].startswith("gen-")
    assert streamed[0]["completion_tokens"] > 0 and streamed[0]["cost_source"] != "missing"


def test_graph_config_is_checked_against_the_graphs_schema_and_roles_against_its_roles(
    stack: dict[str, Any],
) -> None:
    with pytest.raises(InvalidInput, match=r"graph_config\.audience: Field required"):
        invoke(
            resources.GRAPH_STEP_FUNCTION,
            {
                "execution_id": EXEC,
                "item_id": "x",
                "item": {"text": "t"},
                "graph": "user_async",
                "config": {"graph_config": {"audence": "typo"}},
            },
        )
    bad_role = {
        "input": {
            "graph": "support_agent",
            "items": [{"text": "t"}],
            "config": {"models": {"default": ["openai/gpt-oss-120b:free"], "writer": ["gpt-oss:120b"]}},
        },
        "execution_id": EXEC,
    }
    with pytest.raises(
        InvalidInput, match=r"input\.config\.models: graph support_agent has no model role 'writer'"
    ):
        invoke(resources.VALIDATE_FUNCTION, bad_role)
    assert stack["sim"].requests() == []  # nothing ran


def test_the_readmes_tool_using_graph_runs_through_graph_step(stack: dict[str, Any]) -> None:
    config = {"models": {"fast": ["ollama:gpt-oss:120b"]}}
    state = result_body(stack, run_item("triage", {"text": "Where is order 5521?"}, config))["state"]
    assert state["label"]["category"] in ("billing", "login", "other")
    messages = messages_from_dict(state["messages"])
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[1].tool_calls[0]["args"] == {"order_id": 5521}
    assert messages[2].content == "order 5521: shipped"
    records = usage_records(stack["s3"])
    assert [r["role"] for r in records] == ["fast", "default", "default"]
    assert len(records) == len(stack["sim"].requests())
