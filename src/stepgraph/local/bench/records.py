"""Synthetic usage records for the benchmarks that read usage (bench usage, bench lake): one shape, so
both measure the same rows."""

from __future__ import annotations

from typing import Any

MODELS = ("openai/gpt-oss-120b:free", "openai/gpt-oss-120b", "gpt-oss:120b")
_TEMPLATE: dict[str, Any] = {
    "schema_version": 1,
    "execution_id": "bench",
    "graph": "document_pipeline",
    "node": "draft",
    "attempt": 1,
    "provider": "openrouter",
    "key_label": "main",
    "status": "ok",
    "http_status": 200,
    "error_type": "",
    "prompt_tokens": 100,
    "completion_tokens": 50,
    "reasoning_tokens": 10,
    "cached_tokens": 0,
    "total_tokens": 150,
    "cost_usd": 0.0001,
    "cost_source": "provider",
    "is_free": False,
    "streamed": False,
    "latency_ms": 800,
    "limiter_wait_ms": 0,
    "fallback": False,
}


def bench_record(i: int, ts: str, **fields: Any) -> dict[str, Any]:
    """Record number `i` at `ts`: items and threads cycle over 997, models over `MODELS`; `fields` override."""
    model = MODELS[i % len(MODELS)]
    return {
        **_TEMPLATE,
        "record_id": f"r{i}",
        "ts": ts,
        "item_id": str(i % 997),
        "thread_id": f"t{i % 997}",
        "model_requested": model,
        "model_used": model,
        **fields,
    }
