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
from typing import Any

from stepgraph.limiter.limits import Limit

State = dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """A limit that cannot grant now: retry no sooner than `wait_s` (`inf`: never admissible)."""

    wait_s: float
    limit: str


@dataclass
class Op:
    """One conditional update of one item; `check` and `apply` are its meaning, the stores implement it
    (one subclass per kind of update, so nothing dispatches on a string)."""

    pk: str
    ttl: int = 0

    def check(self, item: State | None) -> bool:
        raise NotImplementedError

    def _update(self, item: State) -> State:
        raise NotImplementedError

    def apply(self, item: State | None) -> State:
        new = self._update(dict(item or {}))
        new["ttl"] = max(int(new.get("ttl", 0)), self.ttl)
        return new


@dataclass
class WindowOp(Op):
    """A sliding window's update of `tat`; `inc` is the seconds this request adds."""

    now: float = 0.0
    inc: float = 0.0
    horizon: float = 0.0

    def sure_refusal(self, known: State) -> bool:
        return False

    def refusal(self, limit: Limit, current: State, now: float) -> Refusal | None:
        tat = float(current["tat"]) if "tat" in current else None
        if tat is None or tat < now:
            return None  # the window went idle: try the idle update
        wait = tat - now
        return Refusal(wait - self.horizon, limit.name) if wait > self.horizon else None


@dataclass
class BusyOp(WindowOp):
    """`tat += inc` while the window is busy and the slot within the horizon."""

    def check(self, item: State | None) -> bool:
        item = item or {}
        return "tat" in item and self.now <= float(item["tat"]) <= self.now + self.horizon

    def _update(self, item: State) -> State:
        item["tat"] = float(item["tat"]) + self.inc
        return item

    def sure_refusal(self, known: State) -> bool:
        return float(known["tat"]) - self.now > self.horizon


@dataclass
class IdleOp(WindowOp):
    """`tat = now + inc` while the window is idle."""

    def check(self, item: State | None) -> bool:
        item = item or {}
        return "tat" not in item or float(item["tat"]) < self.now

    def _update(self, item: State) -> State:
        item["tat"] = self.now + self.inc
        return item


@dataclass
class CountOp(Op):
    """`count += inc` while it stays within `cap` (a UTC-day counter, or the budget's micro-dollars)."""

    now: float = 0.0
    inc: float = 0.0
    cap: int = 0

    def check(self, item: State | None) -> bool:
        return int((item or {}).get("count", 0)) + self.inc <= self.cap

    def _update(self, item: State) -> State:
        item["count"] = int(item.get("count", 0)) + int(self.inc)
        return item

    def sure_refusal(self, known: State) -> bool:
        return int(known.get("count", 0)) + self.inc > self.cap

    def refusal(self, limit: Limit, current: State, now: float) -> Refusal | None:
        return Refusal(seconds_to_next_utc_day(now, day_length(limit)), limit.name)


@dataclass
class LeaseOp(Op):
    """Replace the lease set if the item's version is still `version` (compare-and-swap)."""

    state: State = field(default_factory=dict)
    version: int = 0

    def check(self, item: State | None) -> bool:
        return int((item or {}).get("v", 0)) == self.version

    def _update(self, item: State) -> State:
        return {**self.state, "v": self.version + 1}

    def sure_refusal(self, known: State) -> bool:
        return False

    def refusal(self, limit: Limit, current: State, now: float) -> Refusal | None:
        leases = live_leases(current, now)
        if len(leases) >= limit.capacity:
            return Refusal(max(0.0, min(leases.values()) - now), limit.name)
        return None


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


def item_pk(key: str, limit: Limit, now: float) -> str:
    """The table item that holds `limit` of limiter `key` at `now`: a `utc_day` counter has one per day."""
    base = f"{key}#{limit.name}"
    return f"{base}#{utc_day(now, day_length(limit))}" if limit.kind == "utc_day" else base


def seconds_to_next_utc_day(now: float, day_s: float = DAY_S) -> float:
    return day_s - (now % day_s)


def emission_interval(limit: Limit) -> float:
    return limit.per_seconds / limit.capacity


def token_interval(limit: Limit, reserved: int) -> float:
    """Seconds per unit for a request that reserves `reserved` units of a token window.

    The spacing charges each request after its send, so a window holds at most `capacity` units of the
    requests before the newest one, and the newest adds its whole reservation on top: a provider that
    counts prompt + max_tokens at admission (and the reply's usage after) refuses that. Pacing the others
    by `capacity - reserved` leaves the newest its room. Half the capacity at most: a request that
    reserves more still leaves the window its spacing."""
    room = max(limit.capacity - reserved, limit.capacity / 2)
    return limit.per_seconds / room if limit.unit == "tokens" else emission_interval(limit)


def with_skew_allowance(limit: Limit, max_skew_s: float) -> Limit:
    """The limit as the limiter paces it: callers whose clocks differ by up to `max_skew_s` send up to
    that much earlier or later than the shared schedule says, so a sliding window is spaced over
    `per_seconds + max_skew_s` to keep every real window of `per_seconds` within `capacity`."""
    if limit.kind != "sliding" or max_skew_s == 0:
        return limit
    return replace(limit, per_seconds=limit.per_seconds + max_skew_s)


def plan(
    limit: Limit, pk: str, known: State | None, cost: int, now: float, horizon: float, lease_id: str
) -> Op | Refusal:
    """The update to try given what we last saw of the item, or the refusal when it is sure to come."""
    ttl = int(now + 2 * 86_400)
    if limit.kind == "sliding":
        if cost > limit.capacity:
            return Refusal(float("inf"), limit.name)  # never admissible
        inc = cost * token_interval(limit, cost)
        tat = float(known["tat"]) if known and "tat" in known else None
        ttl = int((tat or now) + inc + limit.per_seconds + 3600)
        if tat is not None and tat >= now:
            return BusyOp(pk, ttl, now=now, inc=inc, horizon=horizon)
        # The horizon also rides on an idle guess: when it loses a race, a slot within reach is a retry.
        return IdleOp(pk, ttl, now=now, inc=inc, horizon=horizon)
    if limit.kind == "utc_day":
        if cost > limit.capacity:
            return Refusal(float("inf"), limit.name)
        return CountOp(pk, ttl, now=now, inc=cost, cap=limit.capacity)
    leases = live_leases(known, now)
    if len(leases) >= limit.capacity:
        return Refusal(max(0.0, min(leases.values()) - now), limit.name)
    leases[lease_id] = now + limit.per_seconds
    return LeaseOp(
        pk,
        int(now + limit.per_seconds + 3600),
        state={"leases": leases},
        version=int((known or {}).get("v", 0)),
    )


def refusal(limit: Limit, op: Op, current: State | None, now: float) -> Refusal | None:
    """Why an update failed: the refusal when the limit is really full, None when we just guessed wrong."""
    assert isinstance(op, WindowOp | CountOp | LeaseOp)
    return op.refusal(limit, current or {}, now)


def live_leases(state: State | None, now: float) -> dict[str, float]:
    leases = (state or {}).get("leases") or {}
    return {k: float(v) for k, v in leases.items() if float(v) > now}
