"""What a provider reply says it used: tokens, cost, model and generation id, read in one place.

The usage callback turns it into a record; the router reconciles a budget reservation with its cost.
Plain functions over LangChain's message fields (duck-typed), so this module imports no LangChain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReplyUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None  # as the provider reported it; None when it did not
    model_used: str = ""
    generation_id: str = ""  # the provider's `gen-...` id, never LangChain's run id
    finish_reason: str | None = None


def reply_usage(
    message: Any, *, llm_output: dict[str, Any] | None = None, generation_info: dict[str, Any] | None = None
) -> ReplyUsage:
    """Read a chat reply (an AIMessage, or None) and the LLMResult's `llm_output` when there is one.

    `provider_usage` is where `stepgraph.providers.chat` keeps a stream's last-chunk usage (with `cost`).
    """
    meta = dict(getattr(message, "response_metadata", None) or {})
    out = llm_output or {}
    usage = out.get("token_usage") or meta.get("token_usage") or meta.get("provider_usage") or {}
    usage_md = getattr(message, "usage_metadata", None) or {}
    prompt = int(usage.get("prompt_tokens") or usage_md.get("input_tokens") or 0)
    completion = int(usage.get("completion_tokens") or usage_md.get("output_tokens") or 0)
    details_in = usage.get("prompt_tokens_details") or {}
    details_out = usage.get("completion_tokens_details") or {}
    gen_id = str(meta.get("generation_id") or meta.get("id") or "")
    return ReplyUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        reasoning_tokens=int(
            details_out.get("reasoning_tokens")
            or (usage_md.get("output_token_details") or {}).get("reasoning")
            or 0
        ),
        cached_tokens=int(
            details_in.get("cached_tokens")
            or (usage_md.get("input_token_details") or {}).get("cache_read")
            or 0
        ),
        total_tokens=int(usage.get("total_tokens") or usage_md.get("total_tokens") or prompt + completion),
        cost_usd=float(usage["cost"]) if usage.get("cost") is not None else None,
        model_used=str(meta.get("model_name") or out.get("model_name") or ""),
        generation_id=gen_id if gen_id.startswith("gen-") else "",
        finish_reason=(generation_info or {}).get("finish_reason") or meta.get("finish_reason"),
    )
