"""`POST .../chat/completions`: the simulated provider's one model endpoint.

Order of checks: outage (5xx or a dropped connection, before anything is counted) → key (401) → body (400)
→ model ID (OpenRouter: 400 "is not a valid model ID"; others: 404 model_not_found) → delisted model (404)
→ context (400, in the provider's wording) → account limits (429 in the provider's dialect, not counted;
OpenRouter limits free variants only unless `limit_paid`) → admitted: faults (502/503/404/..., as a 200
error body when asked), credits (402), reply (`length` when `max_tokens` cuts it; gpt-oss reasoning
fields; streams with keep-alive comments). An admitted attempt counts toward the account's limits even when
it then fails, as on OpenRouter. Groq- and Cerebras-style providers put their limits on every response.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from stepgraph.local.simulator import dialects
from stepgraph.local.simulator.accounts import Account
from stepgraph.local.simulator.completions import (
    completion_body,
    prompt_text,
    reply_text,
    sse_events,
    truncate,
    usage_block,
)
from stepgraph.local.simulator.limits import Decision
from stepgraph.local.simulator.models import MODELS, ModelInfo, count_tokens
from stepgraph.local.simulator.state import Fault, SimState
from stepgraph.local.simulator.tools import structured

Finish = Callable[..., Response]


def account_of(state: SimState, request: Request) -> tuple[Account | None, str]:
    auth = request.headers.get("authorization", "")
    key = auth.removeprefix("Bearer ").strip()
    account = state.accounts.by_key(key)
    if account is None or key in account.revoked:
        return None, key
    return account, key


class DroppedConnection(Response):
    """Headers, then the connection closes mid-body: the client sees a connection error (uvicorn closes
    the socket when the app fails after the response started)."""

    def __init__(self) -> None:
        super().__init__(status_code=200, headers={"content-length": "4096"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b'{"id": "gen-', "more_body": True})
        raise ConnectionResetError("simulated connection drop")


def _not_found(dialect: str, model: str, *, in_body: bool = False) -> Response:
    if dialect == "openrouter":
        return dialects.error(dialect, 404, f"No endpoints found for {model}.", in_body=in_body)
    message = f"The model `{model}` does not exist or you do not have access to it."
    return dialects.error(dialect, 404, message, code="model_not_found", param="model")


def _too_long(dialect: str, model: ModelInfo, prompt_tokens: int) -> Response:
    if dialect == "openrouter":
        msg = (
            f"This endpoint's maximum context length is {model.context_tokens} tokens. However, you requested "
            f"about {prompt_tokens} tokens ({prompt_tokens} of text input). Please reduce the length of either "
            'one, or use the "middle-out" transform to compress your prompt automatically.'
        )
        return dialects.error(dialect, 400, msg, provider_name=None)
    msg = "Please reduce the length of the messages or completion."
    return dialects.error(dialect, 400, msg, code="context_length_exceeded", param="messages")


def _with_limits(state: SimState, account: Account, resp: Response) -> Response:
    """Groq/Cerebras: the account's limits on every response, not only 429s."""
    for name, value in dialects.rate_headers(state.options.header_dialect, account.limits.snapshot()).items():
        resp.headers.setdefault(name, value)
    return resp


async def chat_completions(request: Request) -> Response:
    state: SimState = request.app.state.sim
    dialect = state.options.header_dialect
    started = time.time()
    entry: dict[str, Any] = {
        "ts": started,
        "account": None,
        "key_label": None,
        "model": None,
        "stream": False,
    }

    def finish(resp: Response, **extra: Any) -> Response:
        entry.update(status=resp.status_code, **extra)
        state.record(entry)
        return resp

    outage = state.outage_now()
    if outage is not None:  # a provider that is down counts nothing against anyone's limits
        if outage.status == "connection":
            return finish(DroppedConnection(), connection_error=True)
        headers = {"Retry-After": "1"} if outage.status == 503 else None
        return finish(dialects.error(dialect, int(outage.status), "Service unavailable", headers))
    account, key = account_of(state, request)
    if account is None:
        return finish(
            dialects.error(dialect, 401, "No auth credentials found or key revoked", code="invalid_api_key")
        )
    entry.update(account=account.name, key_label=account.keys[key])
    try:
        body = json.loads(await request.body())
        messages = body["messages"]
        model_name = body["model"]
        if not isinstance(messages, list) or not messages or not isinstance(model_name, str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        message = "Malformed request: need JSON with 'model' (string) and 'messages' (non-empty list)"
        return finish(dialects.error(dialect, 400, message))
    stream = bool(body.get("stream"))
    entry.update(model=model_name, stream=stream)
    model = MODELS.get(model_name)
    if model is None or not state.serves(model_name):
        if dialect == "openrouter":
            return finish(dialects.error(dialect, 400, f"{model_name} is not a valid model ID"))
        return finish(_with_limits(state, account, _not_found(dialect, model_name)))
    if state.is_delisted(model_name):
        return finish(_not_found(dialect, model_name), delisted=True)
    prompt = prompt_text(messages)
    prompt_tokens = count_tokens(prompt)
    if prompt_tokens > model.context_tokens:
        return finish(_too_long(dialect, model, prompt_tokens))

    fault = state.next_fault(model_name)
    if fault and fault.status == 429 and dialect != "openrouter":  # a queued 429 in the provider's own shape
        retry = fault.retry_after_s or 1.0
        queued = Decision(
            False, account.limits.rpm or 1, 0, int((time.time() + retry) * 1000), retry, "minute"
        )
        refused = dialects.rate_limited(dialect, queued, account.limits.snapshot(), model_name, prompt_tokens)
        return finish(refused)
    if fault and fault.status == 429:  # provider-side shared capacity: refused before admission
        retry = fault.retry_after_s or 1.0
        reset_ms = int((time.time() + (-60 if fault.past_reset else retry)) * 1000)
        response = dialects.openrouter_rate_limited(
            8,
            reset_ms,
            retry,
            fault.limit_source or "openrouter_shared_capacity",
            body_only=fault.body_headers_only,
            in_body=fault.error_body,
        )
        return finish(response, error_body=fault.error_body)
    raw_max = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = raw_max if isinstance(raw_max, int) and raw_max > 0 else None
    # What the provider counts at admission: the prompt plus the completion it may write; Cerebras reserves
    # the rest of the context when no max is sent, and keeps its reservation whatever the reply used.
    completion_room = (
        max_tokens
        if max_tokens is not None
        else (max(0, model.context_tokens - prompt_tokens) if state.options.reserve_completion else 0)
    )
    estimate = prompt_tokens + completion_room
    # OpenRouter's platform caps are on free variants; a paid variant has none (unless configured).
    limited = model.is_free or state.options.limit_paid or bool(state.options.free_tier)
    decision = account.limits.admit(estimate) if limited else None
    if decision is not None and not decision.allowed:
        snap = account.limits.snapshot()
        refused = dialects.rate_limited(dialect, decision, snap, model_name, estimate)
        return finish(refused, limit_scope=decision.scope, tokens_requested=estimate)
    try:
        resp = await _admitted(
            state, account, entry, finish, model, body, prompt, prompt_tokens, fault, max_tokens, decision
        )
        return _with_limits(state, account, resp)
    finally:
        if limited:
            account.limits.done()


async def _admitted(
    state: SimState,
    account: Account,
    entry: dict[str, Any],
    finish: Finish,
    model: ModelInfo,
    body: dict[str, Any],
    prompt: str,
    prompt_tokens: int,
    fault: Fault | None,
    max_tokens: int | None,
    decision: Decision | None,
) -> Response:
    dialect = state.options.header_dialect
    model_name = model.name
    delay_ms = state.jitter_ms() + (fault.delay_ms if fault else 0.0)
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000)
    status = fault.status if fault and fault.status else None
    if status is None and state.roll(state.options.fail_rate):
        status = 502 if state.roll(0.5) else 503
    if status == 402 and fault and fault.limit_source:
        retry = fault.retry_after_s or 1.0
        in_flight = dialects.error(
            dialect,
            402,
            "In-flight budget exceeded",
            {"Retry-After": str(max(1, int(retry + 0.999)))},
            in_body=fault.error_body,
            limit_source=fault.limit_source,
        )
        return finish(in_flight, error_body=fault.error_body)
    if status is not None:
        retry = (fault.retry_after_s if fault else None) or 1
        headers = {"Retry-After": str(max(1, int(retry + 0.999)))} if status == 503 else None
        in_body = bool(fault and fault.error_body)
        if status == 404:
            return finish(_not_found(dialect, model_name, in_body=in_body), error_body=in_body)
        upstream: dict[str, Any] = (
            {"provider_name": "stepgraph-simulator", "raw": "upstream connection reset"}
            if status >= 500 and dialect == "openrouter"
            else {}
        )
        failed = dialects.error(
            dialect, status, f"Simulated provider error {status}", headers, in_body=in_body, **upstream
        )
        return finish(failed, error_body=in_body)

    messages = body["messages"]
    extra = structured(body, messages)  # tool calls, or a response_format reply
    if extra.tool_calls:
        text, finish_reason = "", "tool_calls"
    else:
        text, finish_reason = truncate(extra.json_text or reply_text(messages, model_name), max_tokens)
    with state.lock:
        cached = prompt_tokens // 2 if (account.name, prompt) in state.seen_prompts else 0
        state.seen_prompts.add((account.name, prompt))  # type: ignore[arg-type]
    usage = usage_block(model, prompt_tokens, text + "".join(c.arguments for c in extra.tool_calls), cached)
    if dialect == "groq":  # Groq's usage carries its timings
        seconds = max(0.001, (time.time() - entry["ts"]))
        usage.update(
            queue_time=0.0, prompt_time=seconds / 4, completion_time=seconds * 3 / 4, total_time=seconds
        )
    if state.options.free_tier:
        usage["cost"] = 0.0  # a free tier bills nothing, whatever the model's list price
    elif not model.is_free:
        left = account.spendable()
        if left is not None and left < usage["cost"]:
            key_left = account.key_limit_left()
            if key_left is not None and key_left < usage["cost"]:  # the key's own cap binds
                message = (
                    "Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys"
                )
                return finish(dialects.error(dialect, 402, message, limit_source="key"))
            message = "Insufficient credits: add more at /settings/credits"
            return finish(dialects.error(dialect, 402, message, limit_source="credits"))
    if decision is not None and not state.options.reserve_completion:
        account.limits.settle(decision, usage["total_tokens"])  # counted as used, not as estimated
    gen_id = state.new_generation_id()
    account.charge(usage["cost"])
    latency_ms = int((time.time() - entry["ts"]) * 1000)
    state.generations[gen_id] = {
        "id": gen_id,
        "model": model_name,
        "total_cost": usage["cost"],
        "tokens_prompt": usage["prompt_tokens"],
        "tokens_completion": usage["completion_tokens"],
        "native_tokens_prompt": usage["prompt_tokens"],
        "native_tokens_completion": usage["completion_tokens"],
        "native_tokens_reasoning": usage["completion_tokens_details"]["reasoning_tokens"],
        "native_tokens_cached": cached,
        "latency": latency_ms,
        "streamed": entry["stream"],
        "is_byok": False,
        "provider_name": "stepgraph-simulator",
    }
    stream_error = entry["stream"] and (
        (fault is not None and fault.stream_error) or state.roll(state.options.stream_error_rate)
    )
    info = {
        "generation_id": gen_id,
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "cost": usage["cost"],
        "stream_error": stream_error,
        "finish_reason": "error" if stream_error else finish_reason,
    }
    headers = {"X-Generation-Id": gen_id}
    if entry["stream"]:
        events = sse_events(
            gen_id,
            model_name,
            text,
            usage,
            error=stream_error,
            finish_reason=finish_reason,
            tool_calls=extra.tool_calls,
        )
        return finish(StreamingResponse(events, media_type="text/event-stream", headers=headers), **info)
    reply = completion_body(gen_id, model_name, text, usage, finish_reason, extra.tool_calls)
    return finish(JSONResponse(reply, headers=headers), **info)
