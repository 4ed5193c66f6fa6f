"""What the router learns from each answer, shared with every worker through the limiter table.

- Learned limits: a response's rate-limit headers (its provider's dialect) reporting a limit below the
  one in force lower the deployment's shared limit (`DynamoDBRateLimiter.learned`), never above the
  profile, for the limiter's quiet period. 429s on slots our limiter granted, with the provider saying
  the very limit we use is exhausted, show the profile was too generous once `STRIKES` of them fall
  within `STRIKES` windows of that limit (from any worker): it is lowered by a tenth, once per quiet
  period, and only that limit (the others the headers name were not refused). A lone 429 is what a send
  that left late draws at a limit the profile has right; cutting on it cost a tenth of the limit for the
  rest of the batch.
- Health: 5xx, timeouts and connection errors count toward the deployment's circuit breaker; a reply
  closes it (no write when nothing was recorded).
"""

from __future__ import annotations

import logging
from typing import Any

from stepgraph.providers.dialects import error_headers, exhausted_limits, reply_headers, reported_limits
from stepgraph.providers.pool import Route

log = logging.getLogger(__name__)
TOO_GENEROUS = 0.9
STRIKES = 3  # unexplained 429s on one limit within this many of its windows before it is lowered


def _limits_by_name(route: Route) -> dict[str, Any]:
    return {lim.name: lim for lim in getattr(route.limiter, "limits", ())}


def learn(
    route: Route, headers: dict[str, str], *, now: float, rate_limited: bool, metrics: Any = None
) -> list[str]:
    """Lower the shared limits the headers prove too high; the lowerings made, as `name=capacity`."""
    learned = getattr(route.limiter, "learned", None)
    if learned is None or route.dialect == "none":
        return []
    profile = _limits_by_name(route)
    exhausted = exhausted_limits(route.dialect, headers, now=now) if rate_limited else set()
    made = []
    for name, reported in reported_limits(route.dialect, headers, now=now).items():
        if name not in profile:
            continue
        in_force = route.limiter.capacity(name)
        target = reported
        if rate_limited and reported >= in_force:
            if name not in exhausted or in_force < profile[name].capacity:
                continue  # not the refused limit, or already lowered within the quiet period
            window = STRIKES * profile[name].per_seconds
            if not learned.strike(name, within_s=window, needed=STRIKES):
                continue  # one late send's 429 so far, not yet a pattern
            target = int(in_force * TOO_GENEROUS)  # we kept to it and still got a 429
        if target >= in_force:
            continue
        why = f"{route.deployment} reported {name} {reported}" + (" on a 429" if rate_limited else "")
        lowered = learned.lower(name, target, ceiling=profile[name].capacity, reason=why)
        if lowered is not None:
            made.append(f"{name}={lowered.capacity}")
            if metrics is not None and hasattr(metrics, "learned_limit"):
                metrics.learned_limit(route.provider, route.model, name, lowered.capacity)
    return made


def after_reply(route: Route, message: Any, *, now: float, metrics: Any = None) -> list[str]:
    if route.breaker is not None:
        route.breaker.record_success()
    return learn(route, reply_headers(message), now=now, rate_limited=False, metrics=metrics)


def after_rate_limit(route: Route, exc: BaseException, *, now: float, metrics: Any = None) -> list[str]:
    return learn(route, error_headers(exc), now=now, rate_limited=True, metrics=metrics)


def after_failure(route: Route, *, metrics: Any = None) -> bool:
    """A transient failure (5xx, timeout, connection); True when it opened the breaker."""
    if route.breaker is None:
        return False
    opened = bool(route.breaker.record_failure())
    if opened and metrics is not None and hasattr(metrics, "breaker_open"):
        metrics.breaker_open(route.provider, route.model)
    return opened


def retire(route: Route, run_id: str, reason: str) -> None:
    """A 404 "model not found": the deployment is out for the rest of the run, for every worker."""
    if route.breaker is not None and run_id:
        route.breaker.retire(run_id, reason)
