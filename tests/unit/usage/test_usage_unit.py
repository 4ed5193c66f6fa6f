"""Usage record, callback and ledger logic without AWS or sockets."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from stepgraph.usage import sql as usage_sql
from stepgraph.usage.callback import UsageCallbackHandler
from stepgraph.usage.ledger import UsageLedger
from stepgraph.usage.record import UsageRecord, glue_columns

CANARY = "sk-or-v1-CANARY0123456789abcdef"


class FakeS3:
    """put_object with If-None-Match semantics, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, IfNoneMatch: str | None = None) -> None:
        from botocore.exceptions import ClientError

        if IfNoneMatch == "*" and Key in self.objects:
            raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "PutObject")
        self.objects[Key] = Body


def test_ddl_columns_match_the_record_model_exactly() -> None:
    ddl = usage_sql.ddl("create_table")
    body = ddl.split("(", 1)[1].split("PARTITIONED BY")[0]
    declared = re.findall(r"`(\w+)` (\w+)", body)
    assert declared == glue_columns()
    assert [n for n, _ in declared] == list(UsageRecord.model_fields)
    assert "date" not in dict(declared) and "timestamp" not in dict(declared)
    assert "'projection.dt.type' = 'date'" in ddl and "org.apache.hive.hcatalog.data.JsonSerDe" in ddl


def test_fill_leaves_athenas_own_placeholders() -> None:
    filled = usage_sql.fill(usage_sql.ddl("create_table"), database="db", table="t", bucket="b")
    assert "`db`.`t`" in filled and "s3://b/usage/dt=${dt}/" in filled


def _start(handler: UsageCallbackHandler, run_id: uuid.UUID, **meta: Any) -> None:
    handler.on_chat_model_start(
        {}, [[]], run_id=run_id, metadata=meta, invocation_params={"model": "openai/gpt-oss-120b"}
    )


def test_callback_records_tokens_cost_and_metadata() -> None:
    ledger = UsageLedger("b", execution_id="e", invocation_id="i", client=FakeS3())
    handler = UsageCallbackHandler(ledger)
    rid = uuid.uuid4()
    _start(
        handler,
        rid,
        execution_id="arn:x:exec",
        item_id="3",
        thread_id="t/3",
        graph="g",
        langgraph_node="draft",
        attempt=2,
        provider="openrouter",
        key_label="main",
        limiter_wait_ms=120,
    )
    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": 0.0021,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 2},
    }
    msg = AIMessage(
        "hi", response_metadata={"id": "gen-abc", "model_name": "openai/gpt-oss-120b", "token_usage": usage}
    )
    handler.on_llm_end(
        LLMResult(generations=[[ChatGeneration(message=msg)]], llm_output={"token_usage": usage}), run_id=rid
    )
    (rec,) = ledger.records
    assert (rec.node, rec.attempt, rec.provider, rec.key_label, rec.limiter_wait_ms) == (
        "draft",
        2,
        "openrouter",
        "main",
        120,
    )
    assert (rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens, rec.reasoning_tokens) == (
        10,
        5,
        4,
        2,
    )
    assert rec.cost_usd == 0.0021 and rec.cost_source == "provider" and rec.generation_id == "gen-abc"
    assert rec.status == "ok"


def test_streamed_call_without_cost_is_never_a_silent_zero() -> None:
    ledger = UsageLedger("b", execution_id="e", invocation_id="i", client=FakeS3())
    handler = UsageCallbackHandler(ledger)
    rid = uuid.uuid4()
    _start(handler, rid)
    handler.on_llm_new_token("h", run_id=rid)
    msg = AIMessage(
        "hi",
        usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        response_metadata={"id": "lc_run-123"},
    )
    handler.on_llm_end(LLMResult(generations=[[ChatGeneration(message=msg)]]), run_id=rid)
    (rec,) = ledger.records
    assert rec.streamed and rec.cost_usd is None and rec.cost_source == "missing"
    assert rec.generation_id == "" and rec.ttft_ms is not None
    priced = UsageCallbackHandler(ledger, pricing=lambda m, p, c: p * 1e-6 + c * 2e-6)
    rid2 = uuid.uuid4()
    _start(priced, rid2)
    priced.on_llm_end(LLMResult(generations=[[ChatGeneration(message=msg)]]), run_id=rid2)
    assert (
        ledger.records[-1].cost_usd == pytest.approx(3e-6 + 4e-6)
        and ledger.records[-1].cost_source == "estimated"
    )


def test_errors_become_records_with_status() -> None:
    class RateLimitError(Exception):
        status_code = 429

    class APITimeoutError(Exception):
        pass

    ledger = UsageLedger("b", execution_id="e", invocation_id="i", client=FakeS3())
    handler = UsageCallbackHandler(ledger)
    for exc in (RateLimitError("slow down"), APITimeoutError("t"), RuntimeError("x")):
        rid = uuid.uuid4()
        _start(handler, rid)
        handler.on_llm_error(exc, run_id=rid)
    assert [(r.status, r.http_status, r.error_type) for r in ledger.records] == [
        ("rate_limited", 429, "RateLimitError"),
        ("timeout", None, "APITimeoutError"),
        ("error", None, "RuntimeError"),
    ]


def test_ledger_never_overwrites_and_splits_days() -> None:
    s3 = FakeS3()
    one = UsageLedger(
        "b", execution_id="arn:aws:states:us-east-1:1:execution:sm:run-1", invocation_id="inv", client=s3
    )
    two = UsageLedger(
        "b", execution_id="arn:aws:states:us-east-1:1:execution:sm:run-1", invocation_id="inv", client=s3
    )
    for ledger, day in ((one, "2026-01-01"), (two, "2026-01-01"), (one, "2026-01-02")):
        ledger.add(UsageRecord(ts=f"{day}T10:00:00.000000Z"))
    assert one.flush() == ["usage/dt=2026-01-01/run-1/inv.jsonl", "usage/dt=2026-01-02/run-1/inv-1.jsonl"]
    assert two.flush() == ["usage/dt=2026-01-01/run-1/inv-1.jsonl"]  # the name was taken: next suffix
    assert one.flush() == []
    lines = b"".join(s3.objects.values()).decode().splitlines()
    assert len(lines) == 3


def test_ledger_flushes_in_finally_and_keeps_records_on_write_errors() -> None:
    s3 = FakeS3()
    with (
        pytest.raises(ValueError),
        UsageLedger("b", execution_id="e", invocation_id="i", client=s3) as ledger,
    ):
        ledger.add(UsageRecord(ts="2026-01-01T00:00:00Z"))
        raise ValueError("node crashed")
    assert len(s3.objects) == 1

    class Broken(FakeS3):
        def put_object(self, **kw: Any) -> None:
            raise RuntimeError("network down")

    broken = UsageLedger("b", execution_id="e", invocation_id="i", client=Broken())
    broken.add(UsageRecord(ts="2026-01-01T00:00:00Z"))
    with pytest.raises(Exception, match="could not be written"):
        broken.flush()
    broken._client = s3
    assert broken.flush() and len(s3.objects) == 2  # nothing lost: the retry writes them


def test_no_key_ever_reaches_a_record() -> None:
    ledger = UsageLedger("b", execution_id="e", invocation_id="i", client=FakeS3())
    handler = UsageCallbackHandler(ledger)
    rid = uuid.uuid4()
    # Even when a caller puts a key into metadata by mistake, only the named fields are kept.
    _start(handler, rid, api_key=CANARY, key_label="main")
    handler.on_llm_error(RuntimeError("boom"), run_id=rid)
    assert CANARY not in ledger.records[0].model_dump_json()
