"""Routes and pool selection: which deployment of a pool sends the next attempt.

A chain entry is one model or a pool (`pool:NAME`); its routes are one `Route` per deployment,
consecutive in the router's list and sharing `pool`. Each attempt asks every eligible deployment for
a slot and sends through the one that can send soonest: free before paid, then the soonest slot by
what each deployment's limiter last read, ties spread by the day quota left. Asking is cheap: a
refusal the last-read state already proves costs no DynamoDB write (`DynamoDBRateLimiter.try_acquire`),
and the first grant ends the asking. When none can send within its horizon, `Blocked` carries the
soonest wait across the pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable

from stepgraph.providers.keys import KeyRing
from stepgraph.providers.table import ModelSpec


@dataclass
class Route:
    provider: str
    model: str
    spec: ModelSpec
    keys: KeyRing
    make_llm: Callable[[str], Runnable]  # key -> chat model
    limiter: Any = None  # DynamoDBRateLimiter | None
    pool: str | None = None  # the pool this deployment serves in (routes of one pool are consecutive)
    account: str = "main"
    dialect: str = "none"  # header dialect (stepgraph.providers.dialects)
    accounting: str = "usage"  # token accounting: "usage" or "reserved" (prompt + max_tokens up front)
    breaker: Any = None  # CircuitBreaker | None

    @property
    def deployment(self) -> str:
        return f"{self.provider}:{self.model}"


def groups(routes: list[Route]) -> list[list[Route]]:
    """The chain's entries: a pool's consecutive routes together, every other route alone."""
    out: list[list[Route]] = []
    for route in routes:
        if route.pool is not None and out and out[-1][0].pool == route.pool:
            out[-1].append(route)
        else:
            out.append([route])
    return out


@dataclass(frozen=True)
class Picked:
    route: Route
    grant: Any  # the limiter's Grant, or None for a deployment without limits


@dataclass(frozen=True)
class Blocked:
    """No deployment can send within its horizon. `kind`: `local` (a provider-asked wait or a retry
    backoff this worker may sleep), `limiter` (slots further than the horizon) or `breaker` (open)."""

    wait_s: float
    reason: str
    kind: str


def _order_key(
    route: Route, now: float, not_before: dict[int, float], horizon: float
) -> tuple[bool, float, int, float]:
    """Free first; then the soonest slot by what each deployment's limiter last read, projected (a window
    busy when read is taken to be as busy now: a stale view of a busy deployment would look free and
    cost a refused write); then the day quota left; then the freshest view, counted in the grants others
    may have taken since. Waits count in halves of the horizon: finer differences are noise of stale
    views, and among near-equal ones the freshest view is the likelier to hold."""
    if route.limiter is None:
        return (not route.spec.free, 0.0, -(1 << 30), 0.0)
    wait, room = route.limiter.peek(project=True)
    wait = max(wait, not_before.get(id(route), now) - now)
    rate = max(
        (lim.capacity / lim.per_seconds for lim in route.limiter.limits if lim.kind == "sliding"), default=0.0
    )
    read_at = float(getattr(route.limiter, "read_at", float("-inf")))
    stale = (now - read_at) * rate if read_at > float("-inf") else 0.0  # never asked: nothing is stale
    step = horizon / 2 if horizon > 0 else 0.01
    return (
        not route.spec.free,
        math.ceil(round(wait / step, 6)),
        -(room if room is not None else 1 << 30),
        stale,
    )


def pick(
    routes: list[Route],
    *,
    now: float,
    costs: Callable[[Route], Any],
    horizon: Callable[[Route], float],
    not_before: dict[int, float],
    run_id: str = "",
    on_refusal: Callable[[Route, Any], None] | None = None,
) -> Picked | Blocked:
    """The deployment to send through now (its slot reserved), or why none can."""
    blocked: list[Blocked] = []
    for route in sorted(
        routes, key=lambda r: _order_key(r, now, not_before, horizon(r) if r.limiter else 0.0)
    ):
        local = not_before.get(id(route), now) - now
        if local > 0:
            blocked.append(Blocked(local, f"{route.deployment} asked to wait", "local"))
            continue
        if route.breaker is not None and not route.breaker.allow(run_id):
            until = float(route.breaker.record.cached().get("open_until", now))
            blocked.append(Blocked(max(until - now, 1.0), f"{route.deployment} circuit open", "breaker"))
            continue
        if route.limiter is None:
            return Picked(route, None)
        grant = route.limiter.try_acquire(costs(route), horizon=horizon(route), backoff=True)
        if grant.granted:
            return Picked(route, grant)
        if on_refusal is not None:
            on_refusal(route, grant)
        blocked.append(Blocked(grant.wait_s, f"{route.provider} limit {grant.refused_by}", "limiter"))
    return min(blocked, key=lambda b: b.wait_s)
