"""The OpenRouter-compatible HTTP API (starlette).

Order of checks for a completion: key (401) → body (400) → model (404) → context (400) →
account limits (429, not counted) → admitted: faults (502/503/...), credits (402), reply.
An admitted attempt counts toward the account's limits even when it then fails, as on OpenRouter.
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
    usage_block,
)
from stepgraph.local.simulator.models import MODELS, count_tokens
from stepgraph.local.simulator.state import Fault, SimState


def _error(
    status: int, message: str, http_headers: dict[str, str] | None = None, **metadata: Any
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": status, "message": message}}
    if metadata:
        body["error"]["metadata"] = metadata
    return JSONResponse(body, status_code=status, headers=http_headers)


def _account(state: SimState, request: Request) -> tuple[Account | None, str]:
    auth = request.headers.get("authorization", "")
    key = auth.removeprefix("Bearer ").strip()
    account = state.accounts.by_key(key)
    if account is None or key in account.revoked:
        return None, key
    return account, key


def _rate_limit_response(limit: int, reset_ms: int, retry_after_s: float, source: str) -> JSONResponse:
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset_ms),
        # HTTP wants whole seconds; the exact value is in X-RateLimit-Reset (ms) and the body.
        "Retry-After": str(max(1, math.ceil(retry_after_s))),
    }
    return _error(
        429, "Rate limit exceeded", headers, headers=headers, limit_source=source, retry_after_s=retry_after_s
    )


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
        return finish(_error(404, f"No endpoints found for {model_name}"))
    prompt = prompt_text(messages)
    prompt_tokens = count_tokens(prompt)
    if prompt_tokens > model.context_tokens:
        msg = (
            f"This endpoint's maximum context length is {model.context_tokens} tokens. However, you requested "
            f"about {prompt_tokens} tokens. (context_length_exceeded)"
        )
        return finish(_error(400, msg))

    fault = state.next_fault(model_name)
    if fault and fault.status == 429:  # provider-side shared capacity: refused before admission
        retry = fault.retry_after_s or 1.0
        reset_ms = int((time.time() + retry) * 1000)
        return finish(
            _rate_limit_response(8, reset_ms, retry, fault.limit_source or "openrouter_shared_capacity")
        )
    decision = account.limits.admit()
    if not decision.allowed:
        return finish(
            _rate_limit_response(decision.limit, decision.reset_ms, decision.retry_after_s, decision.scope)
        )
    try:
        return await _admitted(
            state, account, entry, finish, model_name, messages, prompt, prompt_tokens, fault
        )
    finally:
        account.limits.done()


async def _admitted(
    state, account, entry, finish, model_name, messages, prompt, prompt_tokens, fault: Fault | None
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
                limit_source=fault.limit_source,
            )
        )
    if status is not None:
        retry = (fault.retry_after_s if fault else None) or 1
        headers = {"Retry-After": str(max(1, math.ceil(retry)))} if status == 503 else None
        return finish(_error(status, f"Simulated provider error {status}", headers))

    text = reply_text(messages, model_name)
    with state.lock:
        cached = prompt_tokens // 2 if (account.name, prompt) in state.seen_prompts else 0
        state.seen_prompts.add((account.name, prompt))  # type: ignore[arg-type]
    usage = usage_block(model, prompt_tokens, text, cached)
    if not model.is_free:
        left = account.spendable()
        if left is not None and left < usage["cost"]:
            return finish(_error(402, "Insufficient credits: add more at /settings/credits"))
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
    }
    headers = {"X-Generation-Id": gen_id}
    if entry["stream"]:
        events = sse_events(gen_id, model_name, text, usage, error=stream_error)
        return finish(StreamingResponse(events, media_type="text/event-stream", headers=headers), **info)
    return finish(JSONResponse(completion_body(gen_id, model_name, text, usage), headers=headers), **info)


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
        Route("/_sim/faults", sim_faults, methods=["POST"]),
        Route("/_sim/reset", sim_reset, methods=["POST"]),
        Route("/_sim/keys/{key}/revoke", sim_revoke, methods=["POST"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
        Route("/_sim/requests", sim_requests, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app
