"""What a response's rate-limit headers say about a deployment's limits, per header dialect.

- `openrouter`: `X-RateLimit-Limit/-Remaining/-Reset` on 429s only (Reset in ms since the epoch: the next
  minute for the per-minute limit, the next UTC midnight for the day), also inside the body at
  `error.metadata.headers`. A reset more than 5 minutes away names the day limit (`rpd`), else `rpm`.
- `openai` (Groq, Cerebras): every response. Groq: `x-ratelimit-limit-requests` (the day's requests),
  `x-ratelimit-limit-tokens` (the minute's tokens); Cerebras: `x-ratelimit-limit-requests-day`,
  `-tokens-minute` (and `-requests-minute`, `-tokens-day` where sent).
- `none`: nothing.

`reported_limits` returns the limits by the profile names they correspond to (`rpm`, `rpd`, `tpm`,
`tpd`); the router lowers the shared limit when one is below the configured profile. Pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepgraph.providers.matrix import body_error

# OpenAI-dialect header suffix -> the profile limit it describes.
_OPENAI_NAMES = {
    "requests": "rpd",  # Groq: the per-day request cap
    "tokens": "tpm",  # Groq: tokens per minute
    "requests-day": "rpd",
    "requests-minute": "rpm",
    "tokens-minute": "tpm",
    "tokens-day": "tpd",
}
DAY_RESET_AFTER_S = 300.0


def _lower(headers: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (headers or {}).items()}


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(float(value.strip()))
    except ValueError:
        return None
    return number if number > 0 else None


def _openrouter(headers: dict[str, str], now: float) -> dict[str, int]:
    limit = _int(headers.get("x-ratelimit-limit"))
    if limit is None:
        return {}
    reset = headers.get("x-ratelimit-reset", "")
    far = reset.strip().isdigit() and int(reset) / 1000 - now > DAY_RESET_AFTER_S
    return {"rpd" if far else "rpm": limit}


def _openai(headers: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for suffix, name in _OPENAI_NAMES.items():
        value = _int(headers.get(f"x-ratelimit-limit-{suffix}"))
        if value is not None:
            out[name] = value
    return out


def reported_limits(dialect: str, headers: Mapping[str, Any] | None, *, now: float) -> dict[str, int]:
    """`{limit name: capacity}` the headers report (empty when they say nothing)."""
    lowered = _lower(headers)
    if dialect == "openrouter":
        return _openrouter(lowered, now)
    if dialect == "openai":
        return _openai(lowered)
    return {}


def exhausted_limits(dialect: str, headers: Mapping[str, Any] | None, *, now: float) -> set[str]:
    """The limit names the headers say have nothing left (`remaining` 0): the ones a 429 was about."""
    lowered = _lower(headers)
    if dialect == "openrouter":
        if lowered.get("x-ratelimit-remaining", "").strip() == "0":
            return set(_openrouter(lowered, now))
        return set()
    if dialect == "openai":
        return {
            name
            for suffix, name in _OPENAI_NAMES.items()
            if lowered.get(f"x-ratelimit-remaining-{suffix}", "").strip() == "0"
        }
    return set()


def error_headers(exc: BaseException) -> dict[str, str]:
    """An error's rate-limit headers: the HTTP response's, then the body's `error.metadata.headers`
    (OpenRouter repeats them there, and upstream 429s carry them only there)."""
    response = getattr(exc, "response", None)
    found = _lower(getattr(response, "headers", None) or {})
    metadata = body_error(exc).get("metadata")
    inner = metadata.get("headers") if isinstance(metadata, dict) else None
    if isinstance(inner, dict):
        return {**_lower(inner), **found}
    return found


def reply_headers(message: Any) -> dict[str, str]:
    """A reply's headers (`include_response_headers=True` keeps them in `response_metadata["headers"]`)."""
    meta = getattr(message, "response_metadata", None) or {}
    return _lower(meta.get("headers") or {})
