"""The usage callback against the simulator and the ledger on moto S3."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from langchain_openai import ChatOpenAI

from stepgraph.local.simulator import DEV_KEY, SimulatorHandle
from stepgraph.providers.chat import UsageCapturingChatOpenAI
from stepgraph.usage.callback import UsageCallbackHandler
from stepgraph.usage.ledger import UsageLedger
from stepgraph.usage.record import UsageRecord

PAID = "openai/gpt-oss-120b"


def test_one_record_per_attempt_with_cost_streamed_or_not(
    simulator: SimulatorHandle, s3_client: Any, s3_bucket: str
) -> None:
    ledger = UsageLedger(s3_bucket, execution_id="exec", invocation_id="inv", client=s3_client)
    cb = UsageCallbackHandler(ledger)
    meta = {
        "execution_id": "exec",
        "item_id": "1",
        "node": "draft",
        "provider": "openrouter",
        "key_label": "dev",
    }
    plain = UsageCapturingChatOpenAI(model=PAID, base_url=simulator.base_url, api_key=DEV_KEY, max_retries=0)
    streamed = UsageCapturingChatOpenAI(
        model=PAID,
        base_url=simulator.base_url,
        api_key=DEV_KEY,
        max_retries=0,
        streaming=True,
        stream_usage=True,
    )
    plain.invoke("a plain call", config={"callbacks": [cb], "metadata": meta})
    streamed.invoke("a streamed call", config={"callbacks": [cb], "metadata": meta})
    simulator.queue_faults({"status": 429, "retry_after_s": 1}, {"status": 502})
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            plain.invoke("fails", config={"callbacks": [cb], "metadata": meta})
    sim_requests = simulator.requests()
    records = ledger.records
    assert len(records) == len(sim_requests) == 4
    ok = [r for r in records if r.status == "ok"]
    by_gen = {r["generation_id"]: r for r in sim_requests if r.get("generation_id")}
    for rec in ok:
        assert rec.generation_id in by_gen
        assert rec.cost_usd == pytest.approx(by_gen[rec.generation_id]["cost"]) and rec.cost_usd > 0
        assert rec.cost_source == "provider"
    assert {r.streamed for r in ok} == {True, False}
    assert [(r.status, r.http_status) for r in records[2:]] == [("rate_limited", 429), ("error", 502)]
    keys = ledger.flush()
    body = s3_client.get_object(Bucket=s3_bucket, Key=keys[0])["Body"].read().decode()
    assert len(body.splitlines()) == 4 and DEV_KEY not in body
    assert json.loads(body.splitlines()[0])["key_label"] == "dev"


def test_plain_chatopenai_stream_loses_cost_and_we_say_so(simulator: SimulatorHandle) -> None:
    """The reason UsageCapturingChatOpenAI exists: stock streams would be unpriced, never $0."""
    ledger = UsageLedger("b", execution_id="e", invocation_id="i")
    cb = UsageCallbackHandler(ledger)
    stock = ChatOpenAI(
        model=PAID,
        base_url=simulator.base_url,
        api_key=DEV_KEY,
        max_retries=0,
        streaming=True,
        stream_usage=True,
    )
    stock.invoke("stream", config={"callbacks": [cb]})
    (rec,) = ledger.records
    assert rec.cost_usd is None and rec.cost_source == "missing" and rec.prompt_tokens > 0


def test_concurrent_flushes_lose_nothing_and_never_overwrite(
    s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import boto3
    from moto.s3.responses import S3Response

    # S3 checks If-None-Match and stores the object atomically; moto checks, then stores, so two threads
    # could both create one name (a lost record seen once on a loaded host). Atomic here, as on S3.
    lock, put = threading.Lock(), S3Response.put_object

    def atomic_put(self: Any) -> Any:
        with lock:
            return put(self)

    monkeypatch.setattr(S3Response, "put_object", atomic_put)

    def work(i: int) -> int:
        # One session and client per thread (boto3.client() on the shared default session is not thread-safe).
        client = boto3.session.Session().client("s3", region_name="us-east-1")
        ledger = UsageLedger(s3_bucket, execution_id="exec", invocation_id=f"inv{i % 3}", client=client)
        for j in range(20):
            ledger.add(UsageRecord(ts="2026-04-01T00:00:00Z", item_id=f"{i}-{j}"))
            if j % 7 == 0:
                ledger.flush()
        ledger.flush()
        return 20

    with ThreadPoolExecutor(8) as pool:
        total = sum(pool.map(work, range(24)))
    seen = []
    for obj in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="usage/")["Contents"]:
        body = s3_client.get_object(Bucket=s3_bucket, Key=obj["Key"])["Body"].read().decode()
        seen += [json.loads(line)["item_id"] for line in body.splitlines()]
    assert len(seen) == total == len(set(seen))


def test_gzip_objects(s3_client: Any, s3_bucket: str) -> None:
    import gzip

    with UsageLedger(s3_bucket, execution_id="e", invocation_id="i", client=s3_client, gzip=True) as ledger:
        ledger.add(UsageRecord(ts="2026-04-01T00:00:00Z"))
    (key,) = ledger.keys
    assert key.endswith(".jsonl.gz")
    raw = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert json.loads(gzip.decompress(raw))["ts"] == "2026-04-01T00:00:00Z"
