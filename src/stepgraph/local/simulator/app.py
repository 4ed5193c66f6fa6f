"""The OpenRouter-compatible HTTP API (starlette).

Order of checks for a completion: key (401) → body (400) → model ID (400 "is not a valid model ID")
→ context (400, OpenRouter's wording) → account limits (429, not counted; free variants only unless
`limit_paid`) → admitted: faults (502/503/404/..., as a 200 error body when asked), credits (402), reply
(`length` when `max_tokens` cuts it; gpt-oss reasoning fields; streams with keep-alive comments).
An admitted attempt counts toward the account's limits even when it then fails, as on OpenRouter.
The shapes follow tests/fixtures/providers/ (a test keeps them in step).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stepgraph.local.simulator.accounts import Account
from stepgraph.local.simulator.completions import (
    completion_body,
    prompt_text,
    reply_text,
    sse_events,
    truncate,
    usage_block,
)
from stepgraph.local.simulator.models import MODELS, count_tokens
from stepgraph.local.simulator.state import Fault, SimState


def _error(
    status: int,
    message: str,
    http_headers: dict[str, str] | None = None,
    *,
    in_body: bool = False,
    **metadata: Any,
) -> JSONResponse:
    """OpenRouter's error shape; `in_body` sends it with HTTP 200 as a top-level error body."""
    body: dict[str, Any] = {"error": {"code": status, "message": message}}
    if metadata:
        body["error"]["metadata"] = metadata
    if in_body:  # a 200 carries no rate-limit headers: they are in error.metadata.headers only
        return JSONResponse(body, status_code=200)
    return JSONResponse(body, status_code=status, headers=http_headers)


def _account(state: SimState, request: Request) -> tuple[Account | None, str]:
    auth = request.headers.get("authorization", "")
    key = auth.removeprefix("Bearer ").strip()
    account = state.accounts.by_key(key)
    if account is None or key in account.revoked:
        return None, key
    return account, key


def _rate_limit_response(
    limit: int,
    reset_ms: int,
    retry_after_s: float,
    source: str,
    *,
    body_only: bool = False,
    in_body: bool = False,
) -> JSONResponse:
    """A 429: X-RateLimit-* on the response and the same values in `error.metadata.headers`; an upstream
    429 (`body_only`) has them, and `retry_after_seconds`, in the body alone."""
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset_ms),
    }
    if body_only:
        after = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        return _error(
            429,
            "Provider returned error",
            in_body=in_body,
            provider_name="stepgraph-simulator",
            raw="temporarily rate-limited upstream. Please retry shortly.",
            headers=after,
            limit_source=source,
            retry_after_seconds=retry_after_s,
        )
    # HTTP wants whole seconds; the exact value is in X-RateLimit-Reset (ms).
    http = {**headers, "Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return _error(429, "Rate limit exceeded", http, in_body=in_body, headers=headers, limit_source=source)


async def chat_completions(request: Request) -> Response:
    state: SimState = request.app.state.sim
    started = time.time()
    account, key = _account(state, request)
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

    if account is None:
        return finish(_error(401, "No auth credentials found or key revoked"))
    entry.update(account=account.name, key_label=account.keys[key])
    try:
        body = json.loads(await request.body())
        messages = body["messages"]
        model_name = body["model"]
        if not isinstance(messages, list) or not messages or not isinstance(model_name, str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return finish(
            _error(400, "Malformed request: need JSON with 'model' (string) and 'messages' (non-empty list)")
        )
    stream = bool(body.get("stream"))
    entry.update(model=model_name, stream=stream)
    model = MODELS.get(model_name)
    if model is None:
        return finish(_error(400, f"{model_name} is not a valid model ID"))
    prompt = prompt_text(messages)
    prompt_tokens = count_tokens(prompt)
    if prompt_tokens > model.context_tokens:
        msg = (
            f"This endpoint's maximum context length is {model.context_tokens} tokens. However, you requested "
            f"about {prompt_tokens} tokens ({prompt_tokens} of text input). Please reduce the length of either "
            'one, or use the "middle-out" transform to compress your prompt automatically.'
        )
        return finish(_error(400, msg, provider_name=None))

    fault = state.next_fault(model_name)
    if fault and fault.status == 429:  # provider-side shared capacity: refused before admission
        retry = fault.retry_after_s or 1.0
        reset_ms = int((time.time() + retry) * 1000)
        if fault.past_reset:
            reset_ms = int((time.time() - 60) * 1000)
        response = _rate_limit_response(
            8,
            reset_ms,
            retry,
            fault.limit_source or "openrouter_shared_capacity",
            body_only=fault.body_headers_only,
            in_body=fault.error_body,
        )
        return finish(response, error_body=fault.error_body)
    # OpenRouter's platform caps are on free variants; a paid variant has none (unless configured).
    limited = model.is_free or state.options.limit_paid
    decision = account.limits.admit() if limited else None
    if decision is not None and not decision.allowed:
        return finish(
            _rate_limit_response(decision.limit, decision.reset_ms, decision.retry_after_s, decision.scope)
        )
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    try:
        return await _admitted(
            state,
            account,
            entry,
            finish,
            model_name,
            messages,
            prompt,
            prompt_tokens,
            fault,
            max_tokens if isinstance(max_tokens, int) else None,
        )
    finally:
        if limited:
            account.limits.done()


async def _admitted(
    state,
    account,
    entry,
    finish,
    model_name,
    messages,
    prompt,
    prompt_tokens,
    fault: Fault | None,
    max_tokens: int | None = None,
):  # type: ignore[no-untyped-def]
    model = MODELS[model_name]
    delay_ms = state.jitter_ms() + (fault.delay_ms if fault else 0.0)
    if delay_ms > 0:
        await asyncio.sleep(delay_ms / 1000)
    status = fault.status if fault and fault.status else None
    if status is None and state.roll(state.options.fail_rate):
        status = 502 if state.roll(0.5) else 503
    if status == 402 and fault and fault.limit_source:
        retry = fault.retry_after_s or 1.0
        return finish(
            _error(
                402,
                "In-flight budget exceeded",
                {"Retry-After": str(math.ceil(retry))},
                in_body=fault.error_body,
                limit_source=fault.limit_source,
            ),
            error_body=fault.error_body,
        )
    if status is not None:
        retry = (fault.retry_after_s if fault else None) or 1
        headers = {"Retry-After": str(max(1, math.ceil(retry)))} if status == 503 else None
        message = (
            f"No endpoints found for {model_name}." if status == 404 else f"Simulated provider error {status}"
        )
        in_body = bool(fault and fault.error_body)
        upstream: dict[str, Any] = (
            {"provider_name": "stepgraph-simulator", "raw": "upstream connection reset"}
            if status >= 500
            else {}
        )
        return finish(_error(status, message, headers, in_body=in_body, **upstream), error_body=in_body)

    text, finish_reason = truncate(reply_text(messages, model_name), max_tokens)
    with state.lock:
        cached = prompt_tokens // 2 if (account.name, prompt) in state.seen_prompts else 0
        state.seen_prompts.add((account.name, prompt))  # type: ignore[arg-type]
    usage = usage_block(model, prompt_tokens, text, cached)
    if not model.is_free:
        left = account.spendable()
        if left is not None and left < usage["cost"]:
            key_left = account.key_limit_left()
            if key_left is not None and key_left < usage["cost"]:  # the key's own cap binds
                message = (
                    "Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys"
                )
                return finish(_error(402, message, limit_source="key"))
            return finish(
                _error(402, "Insufficient credits: add more at /settings/credits", limit_source="credits")
            )
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
        "cost": usage["cost"],
        "stream_error": stream_error,
        "finish_reason": "error" if stream_error else finish_reason,
    }
    headers = {"X-Generation-Id": gen_id}
    if entry["stream"]:
        events = sse_events(gen_id, model_name, text, usage, error=stream_error, finish_reason=finish_reason)
        return finish(StreamingResponse(events, media_type="text/event-stream", headers=headers), **info)
    body = completion_body(gen_id, model_name, text, usage, finish_reason)
    return finish(JSONResponse(body, headers=headers), **info)


async def key_info(request: Request) -> Response:
    state: SimState = request.app.state.sim
    account, key = _account(state, request)
    if account is None:
        return _error(401, "No auth credentials found or key revoked")
    lim = account.limits
    used = lim.day_count
    data = {
        "label": account.keys[key],
        # The key's own cap, not the balance (that is GET /credits): null for an uncapped key.
        "limit": account.key_limit_usd,
        "limit_remaining": account.key_limit_left(),
        "usage": round(account.usage_usd, 10),
        "usage_daily": round(account.usage_usd, 10),
        "usage_weekly": round(account.usage_usd, 10),
        "usage_monthly": round(account.usage_usd, 10),
        "is_free_tier": not account.credits_usd or account.credits_usd < 10,
        "rate_limit": {"requests": lim.rpm, "interval": f"{int(lim.window_s)}s"},
        "free_model_daily_requests": {
            "limit": lim.rpd,
            "remaining": None if lim.rpd is None else max(0, lim.rpd - used),
            "used": used,
        },
    }
    # Fields OpenRouter sends that the simulator has no use for, so shapes stay in step with it.
    data.update(limit_reset=None, include_byok_in_limit=False)
    data.update({f"byok_usage{p}": 0 for p in ("", "_daily", "_weekly", "_monthly")})
    return JSONResponse({"data": data})


async def models(request: Request) -> Response:
    """`GET /api/v1/models`: ids, context and pricing as strings of USD per token ("0" = free)."""
    data = [
        {
            "id": m.name,
            "canonical_slug": m.name.removesuffix(":free"),
            "name": m.name,
            "created": 1754414231,
            "context_length": m.context_tokens,
            "architecture": {
                "modality": "text->text",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "tokenizer": "GPT",
            },
            "pricing": m.pricing(),
            "top_provider": {
                "context_length": m.context_tokens,
                "max_completion_tokens": m.context_tokens,
                "is_moderated": False,
            },
            "per_request_limits": None,
            "supported_parameters": ["max_tokens", "reasoning", "include_reasoning", "temperature", "tools"],
        }
        for m in MODELS.values()
    ]
    return JSONResponse({"data": data})


async def credits(request: Request) -> Response:
    """The account balance; as on OpenRouter, only a management key may read it."""
    state: SimState = request.app.state.sim
    key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    account = state.accounts.by_management_key(key)
    if account is None:
        return _error(401, "A management key is required for this endpoint")
    with account.lock:
        total, used = account.credits_usd, account.usage_usd
    return JSONResponse({"data": {"total_credits": total, "total_usage": round(used, 10)}})


async def generation(request: Request) -> Response:
    state: SimState = request.app.state.sim
    account, _ = _account(state, request)
    if account is None:
        return _error(401, "No auth credentials found or key revoked")
    gen = state.generations.get(request.query_params.get("id", ""))
    if gen is None:
        return _error(404, "Generation not found")
    return JSONResponse({"data": gen})


async def sim_faults(request: Request) -> Response:
    state: SimState = request.app.state.sim
    try:
        raw = json.loads(await request.body())
        faults = [Fault.from_json(f) for f in raw.get("next", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        return _error(400, f"bad fault spec: {exc}")
    with state.lock:
        state.faults.extend(faults)
        queued = len(state.faults)
    return JSONResponse({"queued": queued})


async def sim_reset(request: Request) -> Response:
    request.app.state.sim.reset()
    return JSONResponse({"reset": True})


async def sim_revoke(request: Request) -> Response:
    ok = request.app.state.sim.accounts.revoke(request.path_params["key"])
    return JSONResponse({"revoked": ok}, status_code=200 if ok else 404)


async def sim_stats(request: Request) -> Response:
    return JSONResponse(request.app.state.sim.stats())


async def sim_requests(request: Request) -> Response:
    state: SimState = request.app.state.sim
    with state.lock:
        return JSONResponse(list(state.log))


def create_app(state: SimState) -> Starlette:
    routes = [
        Route("/api/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/api/v1/key", key_info, methods=["GET"]),
        Route("/api/v1/credits", credits, methods=["GET"]),
        Route("/api/v1/generation", generation, methods=["GET"]),
        Route("/api/v1/models", models, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_sim/faults", sim_faults, methods=["POST"]),
        Route("/_sim/reset", sim_reset, methods=["POST"]),
        Route("/_sim/keys/{key}/revoke", sim_revoke, methods=["POST"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
        Route("/_sim/requests", sim_requests, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app
