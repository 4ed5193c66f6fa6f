"""The typed contract between the runtime, the router and the usage callback; the sink protocol; the
reply reader; prices from the provider table."""

from __future__ import annotations

import uuid

from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from stepgraph.providers.table import load_provider_table
from stepgraph.usage.attempt import AttemptContext
from stepgraph.usage.callback import UsageCallbackHandler
from stepgraph.usage.reply import reply_usage
from stepgraph.usage.sink import FanOut, ListSink, UsageSink


def test_run_and_attempt_metadata_round_trip_through_one_class() -> None:
    run = AttemptContext(execution_id="e", item_id="7", thread_id="e/7", graph="g")
    assert run.run_metadata() == {"execution_id": "e", "item_id": "7", "thread_id": "e/7", "graph": "g"}
    attempt = AttemptContext().for_attempt(
        attempt=2, provider="p", key_label="k", model_requested="m", limiter_wait_ms=5, fallback=True
    )
    meta = {**run.run_metadata(), **attempt.attempt_metadata(), "langgraph_node": "draft"}
    assert "node" not in attempt.attempt_metadata()
    back = AttemptContext.from_metadata(meta)
    assert back == AttemptContext("e", "7", "e/7", "g", "draft", 2, "p", "k", "m", 5, True)


def test_the_callback_writes_to_any_sink_and_reads_the_typed_context() -> None:
    mine, theirs = ListSink(), ListSink()
    sink = FanOut(mine, theirs)
    assert isinstance(sink, UsageSink) and isinstance(mine, UsageSink)
    handler = UsageCallbackHandler(sink, pricing=load_provider_table(env={}).price)
    rid = uuid.uuid4()
    meta = {
        "execution_id": "e",
        "attempt": 3,
        "model_requested": "openai/gpt-oss-120b",
        "provider": "openrouter",
    }
    handler.on_chat_model_start({}, [[]], run_id=rid, metadata=meta)
    reply = AIMessage(
        "x", response_metadata={"token_usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    )
    handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=reply)]]), run_id=rid)
    assert len(mine.records) == len(theirs.records) == 1
    record = mine.records[0]
    assert (record.execution_id, record.attempt, record.provider) == ("e", 3, "openrouter")
    # Priced from the built-in table: 1000 * 0.10e-6 + 100 * 0.50e-6.
    assert record.cost_source == "estimated" and record.cost_usd == 1000 * 0.10e-6 + 100 * 0.50e-6


def test_reply_usage_reads_tokens_cost_and_only_provider_generation_ids() -> None:
    streamed = AIMessage(
        "x",
        response_metadata={
            "provider_usage": {"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.01},
            "generation_id": "gen-1",
            "finish_reason": "stop",
        },
    )
    used = reply_usage(streamed)
    assert (used.prompt_tokens, used.completion_tokens, used.total_tokens) == (3, 2, 5)
    assert used.cost_usd == 0.01 and used.generation_id == "gen-1" and used.finish_reason == "stop"
    assert reply_usage(AIMessage("x", response_metadata={"id": "run-abc"})).generation_id == ""
    assert reply_usage(None).cost_usd is None


def test_the_table_prices_only_models_it_lists() -> None:
    table = load_provider_table(env={})
    assert table.price("openai/gpt-oss-120b:free", 10, 10) == 0.0
    assert table.price("nobody/knows", 10, 10) is None
