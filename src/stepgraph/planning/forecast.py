"""The forecast of a batch from its workload (calls and tokens per item, measured or given) and the limits
of the deployments its chain would use: requests, tokens, UTC days spanned, wall time with free models
only and with the paid fallback allowed, and the provider spend. Pure: time, limits and prices come in.

The schedule (docs/costs.md): the free deployments serve at the sum of their steady rates (each the
tightest of its sliding limits, requests or tokens per call) after the burst their windows allow, at most
the items' own pace (`concurrency` items at a time, each taking `item_s`); their daily quotas (requests or
tokens per UTC day) end each day's serving, and the batch waits for the next UTC midnight (plus the
wake-up the runtime adds: its day jitter, the state machine's whole-second Wait and the waking step's
start to its first call). With the paid fallback allowed, the paid entries of the chain serve once the
free day is spent, and pay per token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stepgraph.limiter.algorithm import DAY_S
from stepgraph.limiter.limits import Limit
from stepgraph.limiter.profiles import load_profile
from stepgraph.planning.live import LiveReader, LiveState

DAY_JITTER_MEAN_S = 150.0  # runtime.step spreads day wake-ups over 300 s (scaled); half on average
WAIT_ROUNDING_S = 0.5  # the state machine waits whole seconds: half a second late on average


@dataclass(frozen=True)
class Workload:
    """What one batch asks for. `item_s` is one item's own duration with no limit in the way (its calls
    in graph order, measured by the sample); `start_s` how long a run takes to its first call (start,
    validation, the first steps), `end_s` from its last reply to its end."""

    items: int
    calls_per_item: float
    prompt_tokens_per_call: float
    completion_tokens_per_call: float
    concurrency: int = 10
    item_s: float = 10.0
    start_s: float = 0.0
    end_s: float = 0.0
    resume_s: float = 1.0  # a throttled item's Wait's end to its first call (a Lambda round, checkpoint read)

    @property
    def requests(self) -> int:
        return math.ceil(self.items * self.calls_per_item)

    @property
    def tokens_per_call(self) -> float:
        return self.prompt_tokens_per_call + self.completion_tokens_per_call


@dataclass(frozen=True)
class Capacity:
    """One deployment's share: steady requests per second, the burst its windows allow, its daily quota
    in requests (None: no daily limit), its prices, and whether it is free."""

    name: str
    free: bool
    rate_per_s: float
    burst: float
    day_quota: float | None
    usd_per_prompt_token: float = 0.0
    usd_per_completion_token: float = 0.0
    spent_today: float = 0.0  # requests of today's quota already spent (`stepgraph plan --live`)
    learned: dict[str, int] = field(default_factory=dict)  # limits lowered by the provider's answers


def capacity(
    name: str,
    limits: list[Limit],
    *,
    free: bool,
    tokens_per_call: float,
    item_call_s: float,
    prices: tuple[float, float] = (0.0, 0.0),
    reserved_per_call: float = 0.0,
    used_today: Mapping[str, int] | None = None,
    learned: Mapping[str, int] | None = None,
) -> Capacity:
    """A deployment's capacity from its limits (already time-scaled). A concurrency limit of N serves N
    calls of `item_call_s` at a time; a token limit counts `tokens_per_call` per request, and a token
    window leaves room for the newest call's reservation (`reserved_per_call`: prompt + max_tokens), as
    the limiter paces it (`limiter.algorithm.token_interval`). `used_today`: units today's counters
    already hold, per `utc_day` limit (the first day serves only what is left); `learned`: the lowered
    capacities already in `limits`, reported as they are."""
    rate, burst, quota, left = math.inf, math.inf, math.inf, math.inf
    per_call = max(tokens_per_call, 1.0)
    for lim in limits:
        room = float(lim.capacity)
        if lim.unit == "tokens" and lim.kind == "sliding":
            room = max(lim.capacity - reserved_per_call, lim.capacity / 2)
        requests = room / per_call if lim.unit == "tokens" else float(lim.capacity)
        if lim.kind == "utc_day":
            quota = min(quota, requests)
            spent = float((used_today or {}).get(lim.name, 0))
            remaining = max(0.0, room - spent)
            left = min(left, remaining / per_call if lim.unit == "tokens" else remaining)
        elif lim.kind == "concurrency":
            rate = min(rate, lim.capacity / max(item_call_s, 1e-9))
        else:
            rate, burst = min(rate, requests / lim.per_seconds), min(burst, requests)
    return Capacity(
        name,
        free,
        rate,
        burst,
        None if quota == math.inf else quota,
        *prices,
        spent_today=0.0 if quota == math.inf else quota - min(left, quota),
        learned=dict(learned or {}),
    )


@dataclass
class Schedule:
    wall_s: float
    days: list[str]  # UTC days touched (scaled days when time_scale < 1: `day N`)
    free_requests: int
    paid_requests: int
    spend_usd: float
    throttled_steps: float = 0.0  # about: steps that ended throttled (a day's wait, a full window)


@dataclass
class Forecast:
    requests: int
    tokens: int
    free_only: Schedule | None  # None: the chain has no free model
    with_paid: Schedule | None  # None: the chain has no paid model (or paid is not allowed)
    deployments: list[dict[str, Any]] = field(default_factory=list)


def _day_label(t: float, day_s: float, time_scale: float) -> str:
    if time_scale >= 1.0:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")
    return f"day {math.floor(t / day_s)}"


@dataclass
class _Tier:
    """One chain entry's free deployments together (a pool serves from all of them at once)."""

    rate: float
    burst: float
    quota: float  # requests per UTC day (inf: none)
    used: float = 0.0
    burst_left: float = 0.0

    @classmethod
    def of(cls, caps: list[Capacity], pace: float) -> _Tier:
        rate = min(sum(c.rate_per_s for c in caps), pace)
        burst = sum(c.burst for c in caps)
        quotas = [c.day_quota for c in caps]
        quota = math.inf if any(q is None for q in quotas) else sum(q or 0.0 for q in quotas)
        return cls(rate, burst, quota, sum(c.spent_today for c in caps), burst)

    def serve_s(self, n: float) -> float:
        return max(0.0, n - self.burst_left) / self.rate if self.rate != math.inf else 0.0


def schedule(
    work: Workload,
    free: list[list[Capacity]],
    paid: list[Capacity],
    *,
    start: float,
    time_scale: float = 1.0,
    use_paid: bool = False,
) -> Schedule:
    """Walk the UTC days from `start` until every request is served (see the module's doc). `free` holds
    the chain's free entries in order: the router stays on an entry while its waits are short, and moves
    on once its day is spent, so each entry serves its daily quota before the next one starts."""
    day_s = DAY_S * time_scale
    pace = work.concurrency * work.calls_per_item / max(work.item_s, 1e-9)  # the items' own requests/s
    tiers = [_Tier.of(caps, pace) for caps in free if caps]
    tiers = [tier for tier in tiers if tier.rate > 0 and tier.quota > 0]
    paid_tier = _Tier.of(paid, pace) if paid and use_paid else None
    if not tiers and (paid_tier is None or paid_tier.rate <= 0):
        raise ValueError("no deployment of the chain can serve: every limit is 0")
    wake = DAY_JITTER_MEAN_S * time_scale + WAIT_ROUNDING_S + work.resume_s
    # The run's first call leaves after its start-up; day windows stay where they are meanwhile.
    t, left, free_n, paid_n, waits = start + work.start_s, float(work.requests), 0.0, 0.0, 0.0
    days = [_day_label(t, day_s, time_scale)]
    # After the last admission the batch still runs that call; after a day's wait, the waking items'
    # remaining calls in graph order (about one item's duration).
    tail = work.item_s / max(work.calls_per_item, 1.0)
    while left > 1e-9:
        day_end = (math.floor(t / day_s) + 1) * day_s
        tier = next((x for x in tiers if x.used < x.quota), None)
        if tier is None and paid_tier is not None:
            waits += max(0.0, left - paid_tier.burst_left)
            t, paid_n, left = t + paid_tier.serve_s(left), paid_n + left, 0.0
            break
        if tier is None:  # every free day is spent: wait for the next UTC midnight
            t = day_end + wake
            for x in tiers:
                x.used, x.burst_left = 0.0, x.burst
            waits += min(work.items, work.concurrency)
            tail = work.item_s
            days.append(_day_label(t, day_s, time_scale))
            continue
        n = min(left, tier.quota - tier.used)
        dt = tier.serve_s(n)
        waits += max(0.0, n - tier.burst_left)  # each request past the burst waited for a slot once
        if t + dt > day_end:  # the day ends first: serving goes on into the next day, quotas anew
            n = min(n, tier.burst_left + tier.rate * (day_end - t))
            t, left, free_n = day_end, left - n, free_n + n
            for x in tiers:
                x.used, x.burst_left = 0.0, 0.0
            days.append(_day_label(t, day_s, time_scale))
            continue
        t, left, free_n = t + dt, left - n, free_n + n
        tier.used, tier.burst_left = tier.used + n, max(0.0, tier.burst_left - n)
        if tail == work.item_s and left <= 1e-9:
            # The last day's requests are what the waking items still had to do: a share of an item each.
            share = n / (min(work.items, work.concurrency) * max(work.calls_per_item, 1.0))
            tail = work.item_s * min(1.0, share)
    t = max(t + tail, start + work.start_s + math.ceil(work.items / work.concurrency) * work.item_s)
    end_label = _day_label(t, day_s, time_scale)
    if end_label not in days:
        days.append(end_label)
    spend = 0.0
    if paid_n:
        cheapest = min(paid, key=lambda c: c.usd_per_prompt_token + c.usd_per_completion_token)
        spend = paid_n * (
            work.prompt_tokens_per_call * cheapest.usd_per_prompt_token
            + work.completion_tokens_per_call * cheapest.usd_per_completion_token
        )
    return Schedule(
        round(t - start + work.end_s, 3),
        list(dict.fromkeys(days)),
        round(free_n),
        round(paid_n),
        round(spend, 6),
        round(waits, 1),
    )


def chain_capacities(
    table: Any,
    models: list[str] | None,
    *,
    work: Workload,
    time_scale: float = 1.0,
    limits_profile: str | None = None,
    limits_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    live: LiveReader | None = None,
) -> tuple[list[list[Capacity]], list[Capacity]]:
    """(free per chain entry, paid) capacities of the deployments the chain (`models` or the table's) would use, each
    account once (free models of an account share its limits), with the limits the runtime applies:
    the provider's profile, its `limit_overrides`, and for the chain's first provider `limits_profile`
    and `limits_overrides` (STEPGRAPH_LIMITS_OVERRIDES), as `runtime.deps.limiter_factory` does.
    `live` (`planning.live.LiveLimits`) adds what the stack's table knows now: learned lowerings and
    today's spent quota."""
    chain = models or table.chain
    primary = table.members(chain[0])[0][0]
    seen: set[str] = set()
    free: list[list[Capacity]] = []
    paid: list[Capacity] = []
    call_s = work.item_s / max(work.calls_per_item, 1.0)
    for entry in chain:
        free.append([])
        for provider, model in table.members(entry):
            spec = table.providers[provider]
            key, profile = spec.deployment(provider, model)
            if key in seen:
                continue
            seen.add(key)
            shared_free = key == f"{provider}:{spec.account}"
            overrides: dict[str, Any] = {}
            if provider == primary and shared_free:
                profile = limits_profile or profile
                known = {lim.name for lim in load_profile(profile)}
                overrides = {k: v for k, v in (limits_overrides or {}).items() if k in known}
            overrides = {**spec.limit_overrides, **overrides}
            limits = load_profile(profile, time_scale=time_scale, overrides=overrides)
            state = live(key, limits) if live is not None else LiveState()
            limits = state.apply(limits)
            m = spec.models[model]
            cap = capacity(
                f"{provider}:{model}",
                limits,
                free=m.free,
                tokens_per_call=work.tokens_per_call,
                item_call_s=call_s,
                prices=(m.usd_per_prompt_token, m.usd_per_completion_token),
                reserved_per_call=work.prompt_tokens_per_call + m.max_tokens,
                used_today=state.used_today,
                learned=state.learned,
            )
            (free[-1] if m.free else paid).append(cap)
    return free, paid


def forecast(
    work: Workload,
    free: list[list[Capacity]],
    paid: list[Capacity],
    *,
    start: float,
    time_scale: float = 1.0,
    allow_paid: bool = True,
) -> Forecast:
    """Both schedules (free only; with the paid fallback when the chain has a paid model)."""
    has_free = any(free)
    free_only = schedule(work, free, [], start=start, time_scale=time_scale) if has_free else None
    with_paid = (
        schedule(work, free, paid, start=start, time_scale=time_scale, use_paid=True)
        if paid and allow_paid
        else None
    )
    return Forecast(
        requests=work.requests,
        tokens=math.ceil(work.requests * work.tokens_per_call),
        free_only=free_only,
        with_paid=with_paid,
        deployments=[
            {
                "deployment": c.name,
                "free": c.free,
                "requests_per_minute": None
                if c.rate_per_s == math.inf
                else round(c.rate_per_s * 60 * time_scale, 2),
                "requests_per_day": None if c.day_quota is None else round(c.day_quota, 1),
                "spent_today": round(c.spent_today, 1),
                "learned": c.learned,
            }
            for c in [*(c for caps in free for c in caps), *paid]
        ],
    )
