"""OpenRouter's account endpoints: the key's info, the balance, one generation, the model list."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stepgraph.local.simulator.chat import account_of
from stepgraph.local.simulator.dialects import error
from stepgraph.local.simulator.models import MODELS
from stepgraph.local.simulator.state import SimState


def _error(status: int, message: str) -> JSONResponse:
    return error("openrouter", status, message)


async def key_info(request: Request) -> Response:
    state: SimState = request.app.state.sim
    account, key = account_of(state, request)
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
    account, _ = account_of(state, request)
    if account is None:
        return _error(401, "No auth credentials found or key revoked")
    gen = state.generations.get(request.query_params.get("id", ""))
    if gen is None:
        return _error(404, "Generation not found")
    return JSONResponse({"data": gen})
