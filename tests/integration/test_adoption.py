"""Adoption: a user's own Lambda, graph, chat model and callbacks with stepgraph's limiter, S3
checkpointer and usage records (moto for AWS, the simulator for the provider).

The Lambda under test is the README's adoption snippet itself, run as written, so the documented code
is the tested code. A recording handler stands in for Langfuse under its import name.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, TypedDict
from uuid import UUID

import boto3
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langgraph.graph import END, START, StateGraph

from stepgraph.limiter import DynamoDBRateLimiter, ensure_limiter_table
from stepgraph.limiter.algorithm import seconds_to_next_utc_day
from stepgraph.local.simulator import DEV_KEY, SimulatorHandle

README = Path(__file__).resolve().parents[2] / "README.md"
LIMITER_TABLE = "user-limiter"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:user-machine:run-1"
QUESTION = "What is six times seven?\nsim-reply: 42"  # the simulator answers exactly "42"


def readme_lambda_source() -> str:
    section = re.search(r"<!-- section:adoption -->(.*?)<!-- /section:adoption -->", README.read_text(), re.S)
    assert section, "README.md has no adoption section"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section.group(1), re.S) if "def handler(" in b]
    assert len(blocks) == 1, "the adoption section should show one Lambda handler"
    return blocks[0]


class RecordingHandler(BaseCallbackHandler):
    """A user's handler with only the classic LLM hooks (as many tracers have)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, UUID, Any]] = []

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kw: Any
    ) -> None:
        self.events.append(("start", run_id, prompts))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kw: Any) -> None:
        self.events.append(("end", run_id, response))

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self.events.append(("error", run_id, error))


class Ticket(TypedDict, total=False):
    question: str
    answer: str
    published: bool


def user_graph_module(publish_fails: dict[str, bool]) -> ModuleType:
    """`my_project.graph`: the user's builder; `publish` crashes while `publish_fails["now"]` is set."""

    def build_graph(llm: Any) -> StateGraph[Any, Any, Any, Any]:
        def answer(state: Ticket) -> dict[str, Any]:
            return {"answer": llm.invoke([HumanMessage(state["question"])]).content}

        def publish(state: Ticket) -> dict[str, Any]:
            if publish_fails["now"]:
                raise RuntimeError("publish crashed")
            return {"published": True}

        graph = StateGraph(Ticket)
        graph.add_node("answer", answer)
        graph.add_node("publish", publish)
        graph.add_edge(START, "answer")
        graph.add_edge("answer", "publish")
        graph.add_edge("publish", END)
        return graph

    module = ModuleType("my_project.graph")
    module.build_graph = build_graph  # type: ignore[attr-defined]
    return module


@pytest.fixture
def cold_start(
    simulator: SimulatorHandle, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[[], ModuleType], dict[str, bool]]:
    """Returns `load()`, which imports the README's Lambda afresh (a new container), and the fault switch."""
    ensure_limiter_table(boto3.client("dynamodb", region_name="us-east-1"), LIMITER_TABLE)
    for name, value in {
        "DATA_BUCKET": s3_bucket,
        "LIMITER_TABLE": LIMITER_TABLE,
        "OPENROUTER_API_KEY": DEV_KEY,
        "OPENROUTER_BASE_URL": simulator.base_url,
    }.items():
        monkeypatch.setenv(name, value)
    publish_fails = {"now": True}
    langfuse, langfuse_langchain, my_project = (
        ModuleType("langfuse"),
        ModuleType("langfuse.langchain"),
        ModuleType("my_project"),
    )
    langfuse_langchain.CallbackHandler = RecordingHandler  # type: ignore[attr-defined]
    for name, module in {
        "langfuse": langfuse,
        "langfuse.langchain": langfuse_langchain,
        "my_project": my_project,
        "my_project.graph": user_graph_module(publish_fails),
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    code = compile(readme_lambda_source(), f"{README}#adoption", "exec")

    def load() -> ModuleType:
        module = ModuleType("user_lambda")
        exec(code, module.__dict__)
        return module

    return load, publish_fails


def usage_objects(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="usage/").get("Contents", [])]


def test_user_lambda_keeps_its_callbacks_records_usage_and_resumes(
    cold_start: tuple[Callable[[], ModuleType], dict[str, bool]],
    simulator: SimulatorHandle,
    s3_client: Any,
    s3_bucket: str,
) -> None:
    load, publish_fails = cold_start
    event = {"execution_id": EXECUTION, "item_id": "7", "item": {"question": QUESTION}}

    # 1. `answer` calls the model, then `publish` crashes: the Lambda fails as a user's would.
    first = load()
    with pytest.raises(RuntimeError, match="publish crashed"):
        first.handler(event, SimpleNamespace(aws_request_id="req-1"))

    # The user's handler got its own start and end events, with the provider's real result.
    user: RecordingHandler = first.langfuse
    assert [kind for kind, _, _ in user.events] == ["start", "end"]
    (_, start_id, prompts), (_, end_id, result) = user.events
    assert start_id == end_id and "six times seven" in prompts[0]
    assert isinstance(result, LLMResult)
    generation = result.generations[0][0]
    assert isinstance(generation, ChatGeneration)
    message = generation.message
    assert message.content == "42"
    usage = result.llm_output["token_usage"]  # type: ignore[index]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    generation_id = message.response_metadata["id"]
    (sent,) = simulator.requests()
    assert generation_id.startswith("gen-") and sent["generation_id"] == generation_id

    # The ledger flushed the attempt's record although the graph raised: the same generation, tokens, cost.
    (key,) = usage_objects(s3_client, s3_bucket)
    assert key.startswith("usage/dt=") and key.endswith("/run-1/req-1.jsonl")
    body = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read().decode()
    assert DEV_KEY not in body
    (line,) = body.splitlines()
    record = json.loads(line)
    assert {k: record[k] for k in ("generation_id", "status", "http_status", "node", "model_used")} == {
        "generation_id": generation_id,
        "status": "ok",
        "http_status": 200,
        "node": "answer",
        "model_used": "openai/gpt-oss-120b:free",
    }
    assert (record["prompt_tokens"], record["completion_tokens"], record["total_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["total_tokens"],
    )
    assert record["cost_usd"] == pytest.approx(sent["cost"]) and record["cost_usd"] == usage["cost"]
    assert record["is_free"] is True
    assert (record["execution_id"], record["item_id"], record["thread_id"], record["graph"]) == (
        EXECUTION,
        "7",
        f"{EXECUTION}/7",
        "my-graph",
    )
    assert (record["provider"], record["key_label"]) == ("openrouter", "main")

    # 2. The retry lands in a new container: it resumes from S3 at `publish`; `answer` is not run again.
    publish_fails["now"] = False
    second = load()
    out = second.handler(event, SimpleNamespace(aws_request_id="req-2"))
    assert out == {
        "status": "done",
        "result": {"question": QUESTION, "answer": "42", "published": True},
    }
    assert len(simulator.requests()) == 1
    assert second.langfuse.events == []
    assert usage_objects(s3_client, s3_bucket) == [key]  # nothing new to record, nothing written

    # 3. Another Lambda spends the rest of the day's quota (50 free requests): the first container's
    # next item makes no HTTP call and returns `throttled` until the UTC day ends.
    shared = first.limiter
    other = DynamoDBRateLimiter(
        shared.table_name, shared.key, shared.limits, client=boto3.client("dynamodb", region_name="us-east-1")
    )
    assert other.try_acquire({"rpm": 0, "rpd": 50 - other.used_today("rpd")}).granted
    throttled_event = {"execution_id": EXECUTION, "item_id": "8", "item": {"question": QUESTION}}
    until_midnight = seconds_to_next_utc_day(time.time())
    first.langfuse.events.clear()
    out = first.handler(throttled_event, SimpleNamespace(aws_request_id="req-3"))
    assert out["status"] == "throttled" and abs(out["retry_after_s"] - until_midnight) < 5
    assert len(simulator.requests()) == 1
    assert [kind for kind, _, _ in first.langfuse.events] == ["start", "error"]
    # The refused item waits at the node it could not run yet.
    state = first.graph.get_state({"configurable": {"thread_id": f"{EXECUTION}/8"}})
    assert state.next == ("answer",) and state.values == {"question": QUESTION}
