"""`UsageCallbackHandler`: one usage record per chat-model call attempt.

The runtime keeps the client's retries at 0, so one call is one HTTP attempt. Who made the call
(execution, item, thread, graph, node, attempt, provider, key label, limiter wait) comes only from the
run's `metadata`, which the runtime sets; LangGraph's own `langgraph_node` is the fallback for `node`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from stepgraph.usage.ledger import UsageLedger
from stepgraph.usage.record import Status, UsageRecord, iso_utc

Pricing = Callable[[str, int, int], float | None]


def _meta_str(meta: dict[str, Any], key: str, default: str = "") -> str:
    value = meta.get(key, default)
    return "" if value is None else str(value)


class UsageCallbackHandler(BaseCallbackHandler):
    raise_error = False  # a bookkeeping fault must never fail the user's call

    def __init__(
        self, ledger: UsageLedger, *, pricing: Pricing | None = None, now: Callable[[], float] = time.time
    ):
        self.ledger = ledger
        self.pricing = pricing
        self.now = now
        self._runs: dict[UUID, dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- start ---------------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        meta = dict(metadata or {})
        params = invocation_params or kwargs.get("invocation_params") or {}
        with self._lock:
            self._runs[run_id] = {
                "start": self.now(),
                "first_token": None,
                "meta": meta,
                "model": _meta_str(meta, "model_requested")
                or str(params.get("model") or params.get("model_name") or ""),
                "stream": bool(params.get("stream")),
            }

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run["first_token"] is None:
                run["first_token"] = self.now()
                run["stream"] = True

    def _base(self, run_id: UUID) -> tuple[dict[str, Any], dict[str, Any]]:
        with self._lock:
            run = self._runs.pop(run_id, None) or {
                "start": self.now(),
                "first_token": None,
                "meta": {},
                "model": "",
                "stream": False,
            }
        meta = run["meta"]
        end = self.now()
        fields = {
            "ts": iso_utc(run["start"]),
            "execution_id": _meta_str(meta, "execution_id"),
            "item_id": _meta_str(meta, "item_id"),
            "thread_id": _meta_str(meta, "thread_id"),
            "graph": _meta_str(meta, "graph"),
            "node": _meta_str(meta, "node") or _meta_str(meta, "langgraph_node"),
            "attempt": int(meta.get("attempt") or 1),
            "provider": _meta_str(meta, "provider"),
            "key_label": _meta_str(meta, "key_label"),
            "model_requested": run["model"],
            "limiter_wait_ms": int(meta.get("limiter_wait_ms") or 0),
            "fallback": bool(meta.get("fallback", False)),
            "latency_ms": int((end - run["start"]) * 1000),
            "ttft_ms": int((run["first_token"] - run["start"]) * 1000) if run["first_token"] else None,
            "streamed": run["stream"],
        }
        return fields, run

    # -- end -----------------------------------------------------------------------------------
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        fields, _ = self._base(run_id)
        gen = response.generations[0][0] if response.generations and response.generations[0] else None
        message = getattr(gen, "message", None)
        meta = dict(getattr(message, "response_metadata", {}) or {})
        llm_output = response.llm_output or {}
        usage = llm_output.get("token_usage") or meta.get("token_usage") or meta.get("provider_usage") or {}
        usage_md = getattr(message, "usage_metadata", None) or {}
        prompt = int(usage.get("prompt_tokens") or usage_md.get("input_tokens") or 0)
        completion = int(usage.get("completion_tokens") or usage_md.get("output_tokens") or 0)
        details_in = usage.get("prompt_tokens_details") or {}
        details_out = usage.get("completion_tokens_details") or {}
        cached = int(
            details_in.get("cached_tokens")
            or (usage_md.get("input_token_details") or {}).get("cache_read")
            or 0
        )
        reasoning = int(
            details_out.get("reasoning_tokens")
            or (usage_md.get("output_token_details") or {}).get("reasoning")
            or 0
        )
        model_used = str(meta.get("model_name") or llm_output.get("model_name") or fields["model_requested"])
        gen_id = str(meta.get("generation_id") or meta.get("id") or "")
        if not gen_id.startswith("gen-"):
            gen_id = ""  # LangChain's own run ids are not the provider's
        is_free = model_used.endswith(":free") or fields["model_requested"].endswith(":free")
        cost, source = self._cost(usage, model_used, prompt, completion, is_free)
        finish = (getattr(gen, "generation_info", None) or {}).get("finish_reason") or meta.get(
            "finish_reason"
        )
        failed = finish == "error"
        self.ledger.add(
            UsageRecord(
                **fields,
                model_used=model_used,
                generation_id=gen_id,
                status="error" if failed else "ok",
                http_status=200,
                error_type="stream_error" if failed else "",
                prompt_tokens=prompt,
                completion_tokens=completion,
                reasoning_tokens=reasoning,
                cached_tokens=cached,
                total_tokens=int(
                    usage.get("total_tokens") or usage_md.get("total_tokens") or prompt + completion
                ),
                cost_usd=cost,
                cost_source=source,
                is_free=is_free,
            )
        )

    def _cost(
        self, usage: dict[str, Any], model: str, prompt: int, completion: int, is_free: bool
    ) -> tuple[float | None, Any]:
        if usage.get("cost") is not None:
            return float(usage["cost"]), "provider"
        if is_free:
            return 0.0, "free"
        if self.pricing is not None:
            priced = self.pricing(model, prompt, completion)
            if priced is not None:
                return priced, "estimated"
        return None, "missing"  # reconcile later from /api/v1/generation; never a silent $0

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        fields, _ = self._base(run_id)
        status_code = getattr(error, "status_code", None)
        name = type(error).__name__
        status: Status
        if status_code == 429:
            status = "rate_limited"
        elif "Timeout" in name or status_code == 408:
            status = "timeout"
        else:
            status = "error"
        self.ledger.add(
            UsageRecord(
                **fields,
                model_used="",
                status=status,
                http_status=status_code,
                error_type=name,
                is_free=fields["model_requested"].endswith(":free"),
                # OpenRouter bills no failed attempt.
                cost_usd=0.0,
                cost_source="provider",
            )
        )
