"""`UsageCallbackHandler`: one usage record per chat-model call attempt, written to a `UsageSink`.

The runtime keeps the client's retries at 0, so one call is one HTTP attempt. Who made the call comes
only from the run's `metadata`, read as an `AttemptContext` (the runtime and the router fill it); what the
reply used comes from `reply_usage`, the one reader of a reply's tokens and cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from stepgraph.usage.attempt import AttemptContext
from stepgraph.usage.record import Status, UsageRecord, iso_utc
from stepgraph.usage.reply import reply_usage
from stepgraph.usage.sink import UsageSink

Pricing = Callable[[str, int, int], float | None]


class UsageCallbackHandler(BaseCallbackHandler):
    """A LangChain callback that turns each chat-model attempt into one `UsageRecord`.

    Args:
        sink: where records go (a `UsageLedger`, or anything with `add(record)`).
        pricing: `(model, prompt_tokens, completion_tokens) -> USD | None`, used when the provider
            reports no cost (e.g. `ProviderTable.price`); without it such a record says `cost_source="missing"`.
        now: the clock (seconds since the epoch), injected for tests.

    Example:
        >>> with UsageLedger("my-bucket", execution_id="run-1", invocation_id="req-1") as ledger:
        ...     model.invoke("hi", config={"callbacks": [UsageCallbackHandler(ledger)],
        ...                            "metadata": {"execution_id": "run-1", "item_id": "7"}})
    """

    raise_error = False  # a bookkeeping fault must never fail the user's call

    def __init__(
        self, sink: UsageSink, *, pricing: Pricing | None = None, now: Callable[[], float] = time.time
    ):
        self.sink = sink
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
        context = AttemptContext.from_metadata(metadata)
        params = invocation_params or kwargs.get("invocation_params") or {}
        with self._lock:
            self._runs[run_id] = {
                "start": self.now(),
                "first_token": None,
                "context": context,
                "model": context.model_requested
                or str(params.get("model") or params.get("model_name") or ""),
                "stream": bool(params.get("stream")),
            }

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:  # type: ignore[override]
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and run["first_token"] is None:
                run["first_token"] = self.now()
                run["stream"] = True

    def _base(self, run_id: UUID) -> dict[str, Any]:
        with self._lock:
            run = self._runs.pop(run_id, None) or {
                "start": self.now(),
                "first_token": None,
                "context": AttemptContext(),
                "model": "",
                "stream": False,
            }
        ctx: AttemptContext = run["context"]
        end = self.now()
        return {
            "ts": iso_utc(run["start"]),
            "execution_id": ctx.execution_id,
            "item_id": ctx.item_id,
            "thread_id": ctx.thread_id,
            "graph": ctx.graph,
            "node": ctx.node,
            "attempt": ctx.attempt,
            "provider": ctx.provider,
            "key_label": ctx.key_label,
            "model_requested": run["model"],
            "limiter_wait_ms": ctx.limiter_wait_ms,
            "fallback": ctx.fallback,
            "account": ctx.account,
            "deployment": f"{ctx.provider}:{run['model']}" if ctx.provider else "",
            "learned_limit": ctx.learned_limit,
            "limit_rpm": ctx.limit_rpm or None,
            "limit_tpm": ctx.limit_tpm or None,
            "role": ctx.role,
            "latency_ms": int((end - run["start"]) * 1000),
            "ttft_ms": int((run["first_token"] - run["start"]) * 1000) if run["first_token"] else None,
            "streamed": run["stream"],
        }

    # -- end -----------------------------------------------------------------------------------
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        fields = self._base(run_id)
        gen = response.generations[0][0] if response.generations and response.generations[0] else None
        used = reply_usage(
            getattr(gen, "message", None),
            llm_output=response.llm_output,
            generation_info=getattr(gen, "generation_info", None),
        )
        model_used = used.model_used or fields["model_requested"]
        is_free = model_used.endswith(":free") or fields["model_requested"].endswith(":free")
        cost, source = self._cost(
            used.cost_usd, model_used, used.prompt_tokens, used.completion_tokens, is_free
        )
        failed = used.finish_reason == "error"
        message = getattr(gen, "message", None)
        empty = not getattr(message, "content", "") and not getattr(message, "tool_calls", None)
        status: Status = (
            "error" if failed else "incomplete" if used.finish_reason == "length" or empty else "ok"
        )
        self.sink.add(
            UsageRecord(
                **fields,
                model_used=model_used,
                generation_id=used.generation_id,
                status=status,
                http_status=200,
                error_type="stream_error" if failed else "",
                finish_reason=used.finish_reason or "",
                prompt_tokens=used.prompt_tokens,
                completion_tokens=used.completion_tokens,
                reasoning_tokens=used.reasoning_tokens,
                cached_tokens=used.cached_tokens,
                total_tokens=used.total_tokens,
                cost_usd=cost,
                cost_source=source,
                is_free=is_free,
            )
        )

    def _cost(
        self, reported: float | None, model: str, prompt: int, completion: int, is_free: bool
    ) -> tuple[float | None, Any]:
        if reported is not None:
            return reported, "provider"
        if is_free:
            return 0.0, "free"
        if self.pricing is not None:
            priced = self.pricing(model, prompt, completion)
            if priced is not None:
                return priced, "estimated"
        return None, "missing"  # reconcile later from /api/v1/generation; never a silent $0

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        fields = self._base(run_id)
        # A 200 with an error body keeps its HTTP status; its own code decides the status below.
        code = getattr(error, "status_code", None)
        status_code = getattr(error, "http_status", code)
        name = type(error).__name__
        status: Status
        if code == 429:
            status = "rate_limited"
        elif "Timeout" in name or code == 408:
            status = "timeout"
        else:
            status = "error"
        self.sink.add(
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
