"""The admission logic, one rule per limit kind, as conditional updates that commute.

sliding — GCRA with reservations (virtual scheduling, no burst): units are spaced by the emission
interval T = per_seconds / capacity. A request of cost c starts at s = max(tat, now) and moves the
theoretical arrival time `tat` to s + c·T. With cost 1, send times are ≥ T apart, so any window of
per_seconds holds at most `capacity` sends, and under saturation the grant rate is exactly
capacity / per_seconds. A grant may reserve a slot up to `horizon` seconds ahead.
The update needs no prior read: when the limit is busy (tat ≥ now) it is `tat += c·T` under the
condition `now ≤ tat ≤ now + horizon`; when idle it is `tat = now + c·T` under `tat < now`.
Concurrent busy updates commute, so 50 writers on one key do not fight over a version.

utc_day — `count += c` under `count + c ≤ capacity`, on an item keyed by the UTC date.

concurrency — leases with expiry, compare-and-swap on a version; expired leases are dropped on the
next write, so a crashed worker's lease comes back after `per_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from stepgraph.limiter.limits import Limit

State = dict[str, Any]


@dataclass
class Op:
    """One conditional update of one item; `apply` is its meaning, the stores implement it."""

    pk: str
    kind: Literal["busy", "idle", "count", "cas"]
    now: float = 0.0
    inc: float = 0.0  # busy/idle: seconds added to tat; count: units added
    horizon: float = 0.0
    cap: int = 0
    state: State = field(default_factory=dict)  # cas: the new state
    version: int = 0  # cas: expected version
    ttl: int = 0

    def check(self, item: State | None) -> bool:
        item = item or {}
        if self.kind == "busy":
            return "tat" in item and self.now <= float(item["tat"]) <= self.now + self.horizon
        if self.kind == "idle":
            return "tat" not in item or float(item["tat"]) < self.now
        if self.kind == "count":
            return int(item.get("count", 0)) + self.inc <= self.cap
        return int(item.get("v", 0)) == self.version

    def apply(self, item: State | None) -> State:
        item = dict(item or {})
        if self.kind == "busy":
            item["tat"] = float(item["tat"]) + self.inc
        elif self.kind == "idle":
            item["tat"] = self.now + self.inc
        elif self.kind == "count":
            item["count"] = int(item.get("count", 0)) + int(self.inc)
        else:
            item = {**self.state, "v": self.version + 1}
        item["ttl"] = max(int(item.get("ttl", 0)), self.ttl)
        return item


DAY_S = 86_400.0


def day_length(limit: Limit) -> float:
    """A `utc_day` limit's day: the UTC calendar day, or a shorter one in a time-scaled local run
    (`per_seconds` under 86,400, as `load_profile(time_scale=...)` sets it). Days start at multiples
    of their length since the epoch, so the simulator's scaled days line up with the limiter's."""
    return limit.per_seconds if 0 < limit.per_seconds < DAY_S else DAY_S


def utc_day(now: float, day_s: float = DAY_S) -> str:
    if day_s >= DAY_S:
        return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    return f"d{int(now // day_s)}"  # a scaled day's number: no calendar date reaches that far


def seconds_to_next_utc_day(now: float, day_s: float = DAY_S) -> float:
    return day_s - (now % day_s)


def emission_interval(limit: Limit) -> float:
    return limit.per_seconds / limit.capacity


def with_skew_allowance(limit: Limit, max_skew_s: float) -> Limit:
    """The limit as the limiter paces it: callers whose clocks differ by up to `max_skew_s` send up to
    that much earlier or later than the shared schedule says, so a sliding window is spaced over
    `per_seconds + max_skew_s` to keep every real window of `per_seconds` within `capacity`."""
    if limit.kind != "sliding" or max_skew_s == 0:
        return limit
    return replace(limit, per_seconds=limit.per_seconds + max_skew_s)


def plan(
    limit: Limit, pk: str, known: State | None, cost: int, now: float, horizon: float, lease_id: str
) -> Op | float:
    """The update to try given what we last saw of the item, or the wait when it is sure to be refused."""
    ttl = int(now + 2 * 86_400)
    if limit.kind == "sliding":
        if cost > limit.capacity:
            return float("inf")  # never admissible
        inc = cost * emission_interval(limit)
        tat = float(known["tat"]) if known and "tat" in known else None
        ttl = int((tat or now) + inc + limit.per_seconds + 3600)
        if tat is not None and tat >= now:
            return Op(pk, "busy", now=now, inc=inc, horizon=horizon, ttl=ttl)
        # The horizon also rides on an idle guess: when it loses a race, a slot within reach is a retry.
        return Op(pk, "idle", now=now, inc=inc, horizon=horizon, ttl=ttl)
    if limit.kind == "utc_day":
        if cost > limit.capacity:
            return float("inf")
        return Op(pk, "count", now=now, inc=cost, cap=limit.capacity, ttl=ttl)
    leases = live_leases(known, now)
    if len(leases) >= limit.capacity:
        return max(0.0, min(leases.values()) - now)
    leases[lease_id] = now + limit.per_seconds
    return Op(
        pk,
        "cas",
        state={"leases": leases},
        version=int((known or {}).get("v", 0)),
        ttl=int(now + limit.per_seconds + 3600),
    )


def refusal_wait(limit: Limit, op: Op, current: State | None, now: float) -> float | None:
    """Why an update failed: the wait when the limit is really full, None when we just guessed wrong."""
    current = current or {}
    if op.kind in ("busy", "idle"):
        tat = float(current["tat"]) if "tat" in current else None
        if tat is None or tat < now:
            return None  # the window went idle: try the idle update
        wait = tat - now
        return wait - op.horizon if wait > op.horizon else None
    if op.kind == "count":
        return seconds_to_next_utc_day(now, day_length(limit))
    leases = live_leases(current, now)
    if len(leases) >= limit.capacity:
        return max(0.0, min(leases.values()) - now)
    return None


def live_leases(state: State | None, now: float) -> dict[str, float]:
    leases = (state or {}).get("leases") or {}
    return {k: float(v) for k, v in leases.items() if float(v) > now}
