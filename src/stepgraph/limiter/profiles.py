"""Named limit profiles per provider account (DESIGN §4 and §6: OpenRouter free is 20/min and 50 or
1,000 per UTC day, per account; Ollama Cloud limits concurrent requests by plan; Groq, Cerebras and
NVIDIA publish free-tier request and token limits). The numbers are the providers' published ones and
change: a provider table's `limit_overrides` (or `STEPGRAPH_LIMITS_OVERRIDES`) corrects them, and the
router lowers them further for a run when the provider's headers report less (learned limits)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from stepgraph.errors import ConfigError
from stepgraph.limiter.algorithm import DAY_S
from stepgraph.limiter.limits import Limit

PROFILES: dict[str, tuple[Limit, ...]] = {
    "openrouter-free": (Limit("rpm", 20, 60), Limit("rpd", 50, 86_400, "utc_day")),
    "openrouter-free-1000": (Limit("rpm", 20, 60), Limit("rpd", 1000, 86_400, "utc_day")),
    "openrouter-paid": (Limit("rpm", 600, 60),),
    "ollama-cloud-free": (Limit("concurrency", 1, 600, "concurrency"),),
    "ollama-cloud-pro": (Limit("concurrency", 3, 600, "concurrency"),),
    "ollama-cloud-max": (Limit("concurrency", 10, 600, "concurrency"),),
    # Groq free plan, per organisation: x-ratelimit-limit-requests is the day, -tokens the minute.
    "groq-free": (
        Limit("rpm", 30, 60),
        Limit("rpd", 1000, 86_400, "utc_day"),
        Limit("tpm", 8000, 60, unit="tokens"),
        Limit("tpd", 200_000, 86_400, "utc_day", unit="tokens"),
    ),
    # Cerebras free tier: it counts prompt + max_completion_tokens up front (token_accounting "reserved").
    "cerebras-free": (
        Limit("rpm", 30, 60),
        Limit("rph", 900, 3600),
        Limit("rpd", 14_400, 86_400, "utc_day"),
        Limit("tpm", 60_000, 60, unit="tokens"),
        Limit("tpd", 1_000_000, 86_400, "utc_day", unit="tokens"),
    ),
    "nvidia-free": (Limit("rpm", 40, 60),),
    "unlimited": (),
}


def load_profile(
    name: str,
    *,
    time_scale: float = 1.0,
    day_scale: float | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Limit]:
    """The limits of a profile. `time_scale` shrinks sliding windows and lease expiry (local runs);
    `day_scale` (default `time_scale`) shrinks the UTC day of `utc_day` limits the same way, so a
    batch that needs several days of quota runs in seconds. Keep `day_scale` the plain time scale (no
    safety margin): the limiter's days must start when the provider's do. `overrides` maps a limit
    name to changed fields, e.g. `{"rpd": {"capacity": 1000}}`; a new name adds a limit."""
    if name not in PROFILES:
        raise ConfigError(
            f"unknown limit profile {name!r}", hint=f"known profiles: {', '.join(sorted(PROFILES))}"
        )
    if not time_scale > 0:
        raise ConfigError(f"time_scale must be > 0 (got {time_scale})")
    limits = {lim.name: lim for lim in PROFILES[name]}
    for lname, fields in (overrides or {}).items():
        bad = set(fields) - {"capacity", "per_seconds", "kind", "unit"}
        if bad:
            raise ConfigError(
                f"limit override {lname!r}: unknown fields {sorted(bad)} (allowed: capacity, per_seconds, kind, unit)"
            )
        limits[lname] = replace(limits[lname], **fields) if lname in limits else Limit(lname, **fields)
    day_scale = time_scale if day_scale is None else day_scale
    if not 0 < day_scale <= 1:
        raise ConfigError(f"day_scale must be > 0 and <= 1 (got {day_scale})")
    return [
        replace(lim, per_seconds=DAY_S * day_scale)
        if lim.kind == "utc_day"
        else replace(lim, per_seconds=lim.per_seconds * time_scale)
        for lim in limits.values()
    ]
