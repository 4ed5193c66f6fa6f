"""How each simulated provider speaks: its error bodies and its rate-limit headers.

- `openrouter`: `{"error": {"code", "message", "metadata"}}`; `X-RateLimit-Limit/-Remaining/-Reset` (ms since
  the epoch) on 429s only, the same values in `error.metadata.headers`.
- `groq` (alias `openai`): `{"error": {"message", "type", "code"}}`; on EVERY response
  `x-ratelimit-limit-requests` (per day), `x-ratelimit-limit-tokens` (per minute), `x-ratelimit-remaining-*`,
  `x-ratelimit-reset-*` as durations (`"1m26.4s"`); `retry-after` (seconds) on 429s only.
- `cerebras`: a top-level `{"message", "type", "param", "code"}`; on every response
  `x-ratelimit-{limit,remaining,reset}-requests-day` / `-tokens-minute`, resets in seconds; no `retry-after`.
- `none` (Ollama Cloud-style): OpenAI-shaped errors, no rate-limit headers.
The shapes follow tests/fixtures/providers/ (a test keeps them in step).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.responses import JSONResponse

from stepgraph.local.simulator.limits import Decision, Snapshot

DIALECTS = ("openrouter", "groq", "cerebras", "none")
ALIASES = {"openai": "groq"}


def canonical(dialect: str) -> str:
    name = ALIASES.get(dialect, dialect)
    if name not in DIALECTS:
        raise ValueError(
            f"unknown header dialect {dialect!r}; use one of {', '.join(DIALECTS + tuple(ALIASES))}"
        )
    return name


def duration(seconds: float) -> str:
    """Groq's reset format: `"1m26.4s"`, `"6.6s"`, `"0s"`."""
    seconds = max(0.0, seconds)
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{round(rest, 2):g}s"
    if minutes or hours:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def _seconds(seconds: float) -> str:
    return f"{max(0.0, seconds):.6f}"


def rate_headers(dialect: str, snap: Snapshot) -> dict[str, str]:
    """The headers a Groq- or Cerebras-style provider sends on every response (none for the others)."""
    fmt: Callable[[float], str]
    if dialect == "groq":
        names, fmt = ("requests", "tokens"), duration
    elif dialect == "cerebras":
        names, fmt = ("requests-day", "tokens-minute"), _seconds
    else:
        return {}
    pairs = [
        (names[0], snap.rpd, snap.rpd_remaining, snap.rpd_reset_s),
        (names[1], snap.tpm, snap.tpm_remaining, snap.tpm_reset_s),
    ]
    out: dict[str, str] = {}
    for what, limit, remaining, reset in pairs:
        if limit is None:
            continue
        out[f"x-ratelimit-limit-{what}"] = str(limit)
        out[f"x-ratelimit-remaining-{what}"] = str(remaining)
        out[f"x-ratelimit-reset-{what}"] = fmt(reset)
    return out


_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error"}
_CEREBRAS_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error"}


def error(
    dialect: str,
    status: int,
    message: str,
    http_headers: dict[str, str] | None = None,
    *,
    code: str | None = None,
    param: str | None = None,
    kind: str | None = None,
    in_body: bool = False,
    **metadata: Any,
) -> JSONResponse:
    """An error in the provider's shape; `in_body` (OpenRouter) sends it with HTTP 200 as a top-level
    error body, as OpenRouter sometimes does."""
    if dialect == "openrouter":
        body: dict[str, Any] = {"error": {"code": status, "message": message}}
        if metadata:
            body["error"]["metadata"] = metadata
        if in_body:  # a 200 carries no rate-limit headers: they are in error.metadata.headers only
            return JSONResponse(body, status_code=200)
        return JSONResponse(body, status_code=status, headers=http_headers)
    if dialect == "cerebras":
        kind = kind or _CEREBRAS_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        flat = {"message": message, "type": kind, "param": param, "code": code}
        return JSONResponse(flat, status_code=status, headers=http_headers)
    kind = kind or _OPENAI_TYPES.get(
        status, "internal_server_error" if status >= 500 else "invalid_request_error"
    )
    inner: dict[str, Any] = {"message": message, "type": kind}
    if code is not None:
        inner["code"] = code
    if param is not None:
        inner["param"] = param
    return JSONResponse({"error": inner}, status_code=status, headers=http_headers)


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))  # HTTP wants whole seconds


_SCOPE_WORDS = {
    "minute": ("requests per minute (RPM)", "requests"),
    "day": ("requests per day (RPD)", "requests"),
    "tokens_minute": ("tokens per minute (TPM)", "tokens"),
    "tokens_day": ("tokens per day (TPD)", "tokens"),
    "concurrency": ("concurrent requests", "requests"),
    "too_large": ("tokens per minute (TPM)", "tokens"),
}


def openrouter_rate_limited(
    limit: int,
    reset_ms: int,
    retry_after_s: float,
    source: str,
    *,
    body_only: bool = False,
    in_body: bool = False,
) -> JSONResponse:
    """OpenRouter's 429: X-RateLimit-* on the response and the same values in `error.metadata.headers`; an
    upstream 429 (`body_only`) has them, and `retry_after_seconds`, in the body alone."""
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(reset_ms),
    }
    if body_only:
        return error(
            "openrouter",
            429,
            "Provider returned error",
            in_body=in_body,
            provider_name="stepgraph-simulator",
            raw="temporarily rate-limited upstream. Please retry shortly.",
            headers={"Retry-After": _retry_after(retry_after_s)},
            limit_source=source,
            retry_after_seconds=retry_after_s,
        )
    http = {**headers, "Retry-After": _retry_after(retry_after_s)}
    return error(
        "openrouter", 429, "Rate limit exceeded", http, in_body=in_body, headers=headers, limit_source=source
    )


def rate_limited(
    dialect: str, decision: Decision, snap: Snapshot, model: str, requested: int
) -> JSONResponse:
    """The provider's answer to a request over one of its limits (`too_large`: Groq answers 413)."""
    if dialect == "openrouter":
        return openrouter_rate_limited(
            decision.limit, decision.reset_ms, decision.retry_after_s, decision.scope
        )
    what, kind = _SCOPE_WORDS.get(decision.scope, ("requests", "requests"))
    used = decision.limit - decision.remaining
    wait = max(0.0, decision.retry_after_s)
    # As the real ones do, the refused dimension reads 0 remaining (the request does not fit in what is
    # left), with its reset: a reader that takes "the exhausted limit's reset" finds the right wait.
    if decision.scope in ("tokens_minute", "too_large"):
        snap = replace(snap, tpm_remaining=0, tpm_reset_s=wait or snap.tpm_reset_s)
    elif decision.scope == "day":
        snap = replace(snap, rpd_remaining=0)
    headers = rate_headers(dialect, snap)
    if dialect == "cerebras":  # Cerebras sends no retry-after: its reset headers say when
        tokens = kind == "tokens"
        message = (
            "Tokens per minute limit exceeded - too many tokens processed."
            if tokens
            else "Requests per minute limit exceeded - too many requests sent."
        )
        return error(
            dialect,
            429,
            message,
            headers,
            code="token_quota_exceeded" if tokens else "request_quota_exceeded",
            param="quota",
            kind="too_many_tokens_error" if tokens else "too_many_requests_error",
        )
    if decision.scope == "too_large":
        message = (
            f"Request too large for model `{model}` in organization `org_sim` service tier `on_demand` on {what}: "
            f"Limit {decision.limit}, Requested {requested}, please reduce your message size and try again."
        )
        return error(dialect, 413, message, headers, code="rate_limit_exceeded", kind=kind)
    message = (
        f"Rate limit reached for model `{model}` in organization `org_sim` service tier `on_demand` on {what}: "
        f"Limit {decision.limit}, Used {used}, Requested {requested}. Please try again in {duration(wait)}."
    )
    http = {**headers, "retry-after": _retry_after(wait)}
    return error(dialect, 429, message, http, code="rate_limit_exceeded", kind=kind)
