"""Deterministic chat completions: reply text, usage and the SSE stream shape."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from stepgraph.local.simulator.models import ModelInfo, count_tokens

_SIM_REPLY = re.compile(r"^\s*sim-reply:\s*(.*)$", re.MULTILINE | re.IGNORECASE)


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role', '')}: {message_text(m)}" for m in messages)


def reply_text(messages: list[dict[str, Any]], model: str) -> str:
    """`sim-reply: TEXT` in the last user message forces the reply; otherwise a digest plus an echo."""
    last_user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    forced = _SIM_REPLY.findall(last_user)
    if forced:
        return forced[-1].strip()
    digest = hashlib.sha256((model + "\n" + prompt_text(messages)).encode()).hexdigest()[:8]
    words = last_user.split()[:24]
    return f"[{digest}] " + " ".join(words)


def usage_block(model: ModelInfo, prompt_tokens: int, completion: str, cached_tokens: int) -> dict[str, Any]:
    completion_tokens = count_tokens(completion)
    reasoning = completion_tokens // 4 if "gpt-oss" in model.name else 0
    completion_tokens += reasoning  # reasoning tokens are billed as completion tokens
    cost = model.cost(prompt_tokens, completion_tokens)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost": cost,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "image_tokens": 0},
        "cost_details": {
            "upstream_inference_cost": None,
            "upstream_inference_prompt_cost": 0,
            "upstream_inference_completions_cost": 0,
        },
    }


KEEP_ALIVE = ": OPENROUTER PROCESSING\n\n"  # OpenRouter's SSE comment while the upstream thinks


def reasoning_of(model: str, text: str) -> str | None:
    """gpt-oss replies carry `message.reasoning` (and `reasoning_details`) beside the content."""
    return f"The user wants: {text[:40]}" if "gpt-oss" in model else None


def truncate(text: str, max_tokens: int | None) -> tuple[str, str]:
    """(text, finish_reason): cut at `max_tokens` (about four characters a token) with `length`."""
    if max_tokens is not None and count_tokens(text) > max_tokens:
        return text[: max(0, max_tokens * 4)], "length"
    return text, "stop"


def _tool_calls(calls: list[Any]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def _message(model: str, text: str, calls: list[Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = _tool_calls(calls)
    else:
        message["content"] = text
    reasoning = reasoning_of(model, text)
    if reasoning is not None:
        message["reasoning"] = reasoning
        message["reasoning_details"] = [
            {"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}
        ]
    return message


def completion_body(
    gen_id: str,
    model: str,
    text: str,
    usage: dict[str, Any],
    finish_reason: str = "stop",
    tool_calls: list[Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": gen_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "provider": "stepgraph-simulator",
        "choices": [
            {
                "index": 0,
                "message": _message(model, text, tool_calls),
                "finish_reason": finish_reason,
                "native_finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "system_fingerprint": None,
        "usage": usage,
    }


def _chunk(gen_id: str, model: str, delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
    body = {
        "id": gen_id,
        "provider": "stepgraph-simulator",
        "model": model,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "finish_reason": finish,
                "native_finish_reason": finish,
                "logprobs": None,
            }
        ],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


def sse_events(
    gen_id: str,
    model: str,
    text: str,
    usage: dict[str, Any],
    *,
    error: bool = False,
    finish_reason: str = "stop",
    tool_calls: list[Any] | None = None,
) -> Iterator[str]:
    """Keep-alive comments, content chunks (or tool-call deltas: each call's id and name, then its
    arguments in two pieces), a finish chunk, then usage (OpenRouter sends usage in the last chunk); a
    mid-stream error ends with an error chunk (top-level `error`, finish `error`)."""
    words = text.split(" ")
    pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    if error:
        pieces = pieces[: max(1, len(pieces) // 2)]
    yield KEEP_ALIVE
    yield _chunk(gen_id, model, {"role": "assistant", "content": ""}, None)
    reasoning = reasoning_of(model, text)
    if reasoning is not None:
        details = [{"type": "reasoning.text", "text": reasoning, "format": "unknown", "index": 0}]
        yield KEEP_ALIVE
        yield _chunk(
            gen_id,
            model,
            {"role": "assistant", "content": "", "reasoning": reasoning, "reasoning_details": details},
            None,
        )
    for i, call in enumerate(tool_calls or []):
        head = {
            "index": i,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield _chunk(gen_id, model, {"role": "assistant", "content": None, "tool_calls": [head]}, None)
        half = len(call.arguments) // 2
        for part in (call.arguments[:half], call.arguments[half:]):
            delta = {"tool_calls": [{"index": i, "function": {"arguments": part}}]}
            yield _chunk(gen_id, model, delta, None)
    for piece in pieces if not tool_calls else []:
        yield _chunk(gen_id, model, {"role": "assistant", "content": piece}, None)
    if error:
        err = {"code": "server_error", "message": "simulated provider error mid-stream"}
        yield _chunk(gen_id, model, {"content": ""}, "error", error=err)
        return  # OpenRouter ends the stream after the error chunk
    yield _chunk(gen_id, model, {"role": "assistant", "content": ""}, finish_reason)
    body = {
        "id": gen_id,
        "provider": "stepgraph-simulator",
        "model": model,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
    }
    yield f"data: {json.dumps({**body, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"
