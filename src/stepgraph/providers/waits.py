"""How long a provider asks us to wait, read from wherever it says so (docs/providers.md).

Places, first found wins:
1. HTTP headers: OpenRouter's `X-RateLimit-Reset` (ms since the epoch), `Retry-After` (seconds);
2. the body: OpenRouter's `error.metadata.headers` (the same names, also on upstream 429s whose HTTP
   response has none) and `error.metadata.retry_after_seconds`;
3. OpenAI-dialect headers (Groq, Cerebras): `x-ratelimit-reset-requests` / `-tokens` as durations
   (`"2m30s"`, `"6.6s"`) or Cerebras' `x-ratelimit-reset-*-minute` / `-day` in seconds.

Pure functions of the exception and `now`: the router applies its floor and cap.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stepgraph.providers.matrix import body_error

_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$"
)


def parse_duration(text: str) -> float | None:
    """Groq's reset durations (`"1m26.4s"`, `"6.6s"`, `"250ms"`) or plain seconds (`"11.38"`)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        return None
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def _get(headers: Mapping[str, Any], name: str) -> str | None:
    lowered = {str(k).lower(): v for k, v in headers.items()}
    value = lowered.get(name.lower())
    return None if value is None else str(value)


def _from_openrouter(headers: Mapping[str, Any], now: float) -> float | None:
    reset = _get(headers, "X-RateLimit-Reset")
    if reset and reset.strip().isdigit():
        return int(reset) / 1000 - now  # may be negative: a reset in the past (the caller floors it)
    after = _get(headers, "Retry-After")
    if after is not None:
        try:
            return float(after)
        except ValueError:
            return None
    return None


def _from_openai_dialect(headers: Mapping[str, Any]) -> float | None:
    # The binding limit is the one with nothing left; without that, the later reset.
    waits: list[tuple[bool, float]] = []
    for what in ("requests", "tokens", "requests-day", "tokens-minute", "requests-minute", "tokens-day"):
        reset = _get(headers, f"x-ratelimit-reset-{what}")
        seconds = parse_duration(reset) if reset else None
        if seconds is None:
            continue
        remaining = _get(headers, f"x-ratelimit-remaining-{what}")
        waits.append((remaining is not None and remaining.strip() == "0", seconds))
    if not waits:
        return None
    exhausted = [s for empty, s in waits if empty]
    return max(exhausted) if exhausted else max(s for _, s in waits)


def wait_hint_s(exc: BaseException, now: float) -> float | None:
    """Seconds the provider asks for (negative for a reset already past), or None when it says nothing."""
    response = getattr(exc, "response", None)
    headers: Mapping[str, Any] = response.headers if response is not None else {}
    found = _from_openrouter(headers, now)
    if found is not None:
        return found
    metadata = body_error(exc).get("metadata") or {}
    if isinstance(metadata, dict):
        inner = metadata.get("headers")
        if isinstance(inner, dict):
            found = _from_openrouter(inner, now)
            if found is not None:
                return found
        for name in ("retry_after_seconds", "retry_after_s", "retry_after"):
            value = metadata.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return _from_openai_dialect(headers)
