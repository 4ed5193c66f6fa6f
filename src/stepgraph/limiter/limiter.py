"""`DynamoDBRateLimiter`: one limiter shared by every process that uses the same table and key."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import deque
from dataclasses import replace
from typing import Any

from langchain_core.rate_limiters import BaseRateLimiter

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.errors import ConfigError
from stepgraph.limiter import algorithm
from stepgraph.limiter.giveback import GiveBack
from stepgraph.limiter.learned import LearnedLimits
from stepgraph.limiter.limits import Grant, Limit, LimiterUnavailable, RateLimited
from stepgraph.limiter.store import LazyStore, Store
from stepgraph.limiter.view import CachedView, Costs

ROUND_TRIPS_KEPT = 32  # the acquisitions the lead looks back over

CONTENTION_DOUBLINGS = 6


class DynamoDBRateLimiter(LazyStore, CachedView, GiveBack, BaseRateLimiter):
    """Holds every limit of `key` across processes; a request is granted only when all limits grant.

    `try_acquire` reserves a slot (possibly up to `max_wait_s` ahead) with one conditional write in
    the common case; `acquire(blocking=True)` sleeps at most `max_wait_s` and raises `RateLimited`
    when the next slot is further away, so no Lambda sleeps away its time budget.

    Args:
        table_name: the DynamoDB limiter table (`pk` string key, TTL on `ttl`).
        key: what the limits belong to, e.g. `"openrouter:main"` (a provider account).
        limits: the `Limit`s, e.g. `load_profile("openrouter-free")`.
        client: a boto3 DynamoDB client; `store` replaces the table (tests pass a `MemoryStore`).
        clock: injected time.
        max_wait_s: the furthest slot `acquire` sleeps for (and `try_acquire`'s default horizon).
        max_attempts: conditional-write attempts under contention before refusing (fail closed).
        max_skew_s: the largest clock difference between any two callers of the key; sliding windows
            are paced over `per_seconds + max_skew_s` so the limit holds in real time.
        lead_s: the least time from a request to its window slot. The slot is the send time, so a grant
            must come back before it: the lead is also at least the longest of this limiter's last
            acquisitions (its writes' round trip), or a grant returns after its slot, the send leaves
            late and bunches into the provider's window with the on-time sends after it.
        learned_quiet_s / learned_refresh_s: how long a limit lowered from the provider's answers
            (`learned.lower`) lasts, and how often each caller re-reads the lowerings (a read, no write).
        late_s: how late after its slot a send may leave before `sent` moves the windows' schedule back
            by its lateness (what is left of the pacing's allowance, `max_skew_s` and the margin in
            the limits, absorbs the rest: the way to the provider).
        token_view_s: how old this caller's view of a token window may be before a refusal read from it
            is checked with a read (no write): `reconcile` hands back most of what each call reserved
            (prompt + max_tokens), so a busy token window seen a moment ago is often free again.

    Returns (from `try_acquire`): a `Grant`; granted, send after `wait_s` (at `send_at`); refused,
    `refused_by` names the limit and `wait_s` says when to come back. Hand a finished call's grant to
    `sent` when the request leaves, `release` (concurrency leases) and the real token counts to `reconcile`.

    Example:
        >>> limiter = DynamoDBRateLimiter("stepgraph-limiter", "openrouter:main", load_profile("openrouter-free"))
        >>> grant = limiter.try_acquire({"rpm": 1})
        >>> if grant.granted:
        ...     time.sleep(grant.wait_s); call_the_provider(); limiter.release(grant)
        >>> ChatOpenAI(..., rate_limiter=limiter)  # or as LangChain's plain rate limiter
    """

    def __init__(
        self,
        table_name: str,
        key: str,
        limits: list[Limit],
        *,
        client: Any = None,
        clock: Clock | None = None,
        max_wait_s: float = 5.0,
        store: Store | None = None,
        max_attempts: int = 50,
        max_skew_s: float = 0.0,
        lead_s: float = 0.0,
        learned_quiet_s: float = 600.0,
        learned_refresh_s: float = 5.0,
        token_view_s: float = 0.5,
        late_s: float = 0.25,
    ) -> None:
        if not limits:
            raise ConfigError(f"rate limiter {key!r} needs at least one Limit")
        names = [lim.name for lim in limits]
        if len(set(names)) != len(names):
            raise ConfigError(f"rate limiter {key!r}: limit names must be unique (got {names})")
        if max_wait_s < 0:
            raise ConfigError(f"rate limiter {key!r}: max_wait_s must be >= 0")
        if not max_skew_s >= 0:
            raise ConfigError(f"rate limiter {key!r}: max_skew_s must be >= 0 (got {max_skew_s!r})")
        self.table_name, self.key, self.limits = table_name, key, list(limits)
        self.clock = clock or SYSTEM_CLOCK
        self.max_wait_s = max_wait_s
        self.max_attempts = max_attempts
        self.max_skew_s = max_skew_s
        if not lead_s >= 0:
            raise ConfigError(f"rate limiter {key!r}: lead_s must be >= 0 (got {lead_s!r})")
        self.lead_s = lead_s
        if not late_s >= 0:
            raise ConfigError(f"rate limiter {key!r}: late_s must be >= 0 (got {late_s!r})")
        self.late_s = late_s
        self._round_trips: deque[float] = deque(maxlen=ROUND_TRIPS_KEPT)
        # What the admission rules see: the limits with the skew allowance in their spacing.
        self._paced = {lim.name: algorithm.with_skew_allowance(lim, max_skew_s) for lim in self.limits}
        self._paced_for: tuple[tuple[str, int], ...] = ()
        self.learned = LearnedLimits(
            lambda: self.store, key, self.clock, quiet_s=learned_quiet_s, refresh_s=learned_refresh_s
        )
        self._client = client
        self._store = store
        self._cache: dict[str, dict[str, Any] | None] = {}
        self._seen_at: dict[str, float] = {}  # when each item of `_cache` was read (a write's answer)
        self.token_view_s = token_view_s
        self._contended = 0  # consecutive refusals that cost a write
        self.read_at = float("-inf")  # when this caller last learned the table's state (a write's answer)
        self._backoff: tuple[float, str | None] = (0.0, None)  # after such a refusal: until when, and why
        self._lock = threading.Lock()

    # -- keys and costs ------------------------------------------------------------------------
    def pk(self, limit: Limit, now: float) -> str:
        return algorithm.item_pk(self.key, limit, now)

    def _costs(self, costs: Costs) -> dict[str, int]:
        given = {"*": costs} if isinstance(costs, int) else dict(costs)
        unknown = set(given) - {"*"} - {lim.name for lim in self.limits}
        if unknown:
            raise ConfigError(f"rate limiter {self.key!r}: unknown limit names in costs: {sorted(unknown)}")
        out = {}
        for lim in self.limits:
            if lim.kind == "concurrency":
                out[lim.name] = 1
            elif lim.name in given:
                out[lim.name] = int(given[lim.name])
            else:  # an int cost counts requests; token limits need an explicit estimate
                out[lim.name] = 0 if lim.unit == "tokens" else int(given.get("*", 1))
        return out

    def _apply_learned(self) -> None:
        """Pace by the learned (lower) capacities in force: a larger spacing from now on keeps every
        window within the profile's limit, and within the learned one a window after the change."""
        caps = tuple(sorted((n, ll.capacity) for n, ll in self.learned.current().items()))
        if caps == self._paced_for:
            return
        lowered = dict(caps)
        self._paced = {
            lim.name: algorithm.with_skew_allowance(
                replace(lim, capacity=min(lim.capacity, lowered.get(lim.name, lim.capacity))), self.max_skew_s
            )
            for lim in self.limits
        }
        self._paced_for = caps

    def capacity(self, name: str) -> int:
        """The capacity in force for limit `name` (the profile's, or a learned lower one)."""
        return self._paced[name].capacity

    def _order(self) -> list[Limit]:
        """Day counters and leases first (their refunds are exact), then token windows, and the request
        window last: its slot is the send time, so no other write may sit between reserving it and
        sending (a send that leaves later than its slot by a write's latency bunches up in the
        provider's window). A refusal seen in what we last read costs no write at all."""
        rank = {"utc_day": 0, "concurrency": 1, "sliding": 3}
        paced = self._paced.values()
        return sorted(paced, key=lambda lim: rank[lim.kind] - (1 if lim.unit == "tokens" else 0))

    # -- the protocol --------------------------------------------------------------------------
    def try_acquire(self, costs: Costs = 1, *, horizon: float | None = None, backoff: bool = False) -> Grant:
        """Reserve a slot in every limit, or none. Granted: send after `wait_s`. Refused: retry after `wait_s`.

        `backoff=True` (the router's pools): a refusal that cost a write under contention adds a growing
        jittered wait, and asks before it ends are refused without a store call."""
        horizon = self.max_wait_s if horizon is None else horizon
        self._apply_learned()
        want = self._costs(costs)
        lease_id = uuid.uuid4().hex
        now = self.clock.now()
        until, refused_by = self._backoff
        if (
            backoff and now < until
        ):  # told to come back later after a contended refusal: asking again costs nothing
            return Grant(False, until - now, costs=want, refused_by=refused_by)
        dims = [lim for lim in self._order() if want[lim.name] > 0]
        lead = self.lead()
        # A refusal we can see in what we last read costs no write. It is sound for request windows and
        # counters, which only grow; token windows shrink on reconcile, so a stale view of one is re-read.
        for lim in dims:
            if lim.kind == "concurrency":
                continue
            at, reach = self._ahead(lim, now, horizon, lead)
            pk = self.pk(lim, now)
            for reread in (False, True):
                planned = algorithm.plan(lim, pk, self._cached(pk), want[lim.name], at, reach, lease_id)
                if isinstance(planned, algorithm.Refusal):
                    return Grant(False, planned.wait_s, costs=want, refused_by=planned.limit)
                if not self._sure_refusal(planned):
                    break
                if reread or not self._reread_stale_tokens(lim, pk, now):
                    wait = self._cached_wait(lim, now, horizon)
                    return Grant(False, wait, costs=want, refused_by=lim.name)
        taken: list[tuple[Limit, str, algorithm.Op, dict[str, Any] | None]] = []
        starts: dict[str, float] = {}
        # The request leaves once, at its latest window's slot: every window reserves that instant (the
        # latest slot in what we last read), not a slot of its own earlier (see `_align`).
        send_at = self._common_start(dims, now, lead)
        for lim in dims:
            try:
                outcome = self._take(lim, want[lim.name], horizon, lease_id, lead, not_before=send_at)
            except LimiterUnavailable:
                self._undo_quietly(taken, lease_id)
                raise
            if isinstance(outcome, algorithm.Refusal):
                self._undo(taken, lease_id)
                extra = self._contention_backoff(lim) if backoff else 0.0
                wait = outcome.wait_s + extra
                if extra > 0:
                    self._backoff = (now + wait, outcome.limit)
                return Grant(False, wait, costs=want, refused_by=outcome.limit)
            op, item, start = outcome
            taken.append((lim, op.pk, op, item))
            if lim.kind == "sliding":  # counters and leases have no place in time
                starts[op.pk] = start
                send_at = max(send_at, start)
        crossed = next(
            (lim for lim, pk, _, _ in taken if lim.kind == "utc_day" and self.pk(lim, send_at) != pk), None
        )
        if crossed is not None:
            # The slot lies in the next day, where the provider counts the send and nothing was counted:
            # give everything back and come back when that day has begun (its counter takes it then).
            self._undo(taken, lease_id)
            wait = algorithm.seconds_to_next_utc_day(now, algorithm.day_length(crossed))
            return Grant(False, wait, costs=want, refused_by=crossed.name)
        self._align(starts, send_at)
        has_lease = any(lim.kind == "concurrency" for lim in dims)
        done = self.clock.now()
        with self._lock:
            self._round_trips.append(done - now)
        wait = max(0.0, send_at - done)
        days = [lim for lim in dims if lim.kind == "utc_day"]
        day = algorithm.utc_day(now, algorithm.day_length(days[0])) if days else algorithm.utc_day(now)
        self._contended = 0
        return Grant(True, wait, lease_id if has_lease else None, want, day=day, send_at=send_at)

    def _contention_backoff(self, lim: Limit) -> float:
        """Extra wait after refusals that cost a write: others took the slots this caller last saw free.
        Refused callers otherwise all come back the moment one slot enters the horizon and pay a failed
        write each. On a sliding window a wait doubling per such refusal in a row (jittered) spreads them
        out; until it ends this caller's own `backoff=True` asks are refused without a write (a pool asks
        every member each attempt). Leases are handed back by others at any moment: never backed off."""
        self._contended += 1
        if lim.kind != "sliding":
            return 0.0
        interval = algorithm.emission_interval(self._paced[lim.name])
        return interval * 2 ** min(self._contended + 1, CONTENTION_DOUBLINGS) * random.uniform(0.5, 1.0)

    def lead(self) -> float:
        """How far ahead a window slot starts: `lead_s`, or the longest recent acquisition when longer."""
        with self._lock:
            measured = max(self._round_trips, default=0.0)
        return min(max(self.lead_s, measured), self.max_wait_s)

    def _common_start(self, dims: list[Limit], now: float, lead: float) -> float:
        """No earlier than this can every sliding window of the request give it a slot: the request
        windows' `tat` as last read (they only grow, so a stale view is never too late; a token window's
        may be, after others' refunds, so token windows are taken at what they answer)."""
        start = now + lead if any(lim.kind == "sliding" for lim in dims) else now
        for lim in dims:
            known = self._cached(self.pk(lim, now)) or {}
            if lim.kind == "sliding" and lim.unit == "requests" and "tat" in known:
                start = max(start, float(known["tat"]))
        return start

    def _align(self, starts: dict[str, float], send_at: float) -> None:
        """Move each window whose slot came out earlier than the send (its view was stale) to the send:
        a provider counts the request when it arrives, and the window's next slots must be spaced from
        then, or a window a capacity later holds one request too many."""
        for pk, start in starts.items():
            if start < send_at - 1e-6:
                self._move_window(pk, send_at - start)

    @staticmethod
    def _ahead(
        lim: Limit, now: float, horizon: float, lead: float, not_before: float = 0.0
    ) -> tuple[float, float]:
        """When a slot of `lim` may start and how far past that it may lie (the horizon counts from now)."""
        if lim.kind != "sliding":
            return now, horizon
        at = max(now + lead, not_before)
        return at, max(0.0, horizon - (at - now))

    def _take(
        self,
        lim: Limit,
        cost: int,
        horizon: float,
        lease_id: str,
        lead: float = 0.0,
        not_before: float = 0.0,
    ) -> tuple[algorithm.Op, dict[str, Any] | None, float] | algorithm.Refusal:
        """One dimension: the op and item written and the slot's start (epoch s), or the refusal."""
        refreshed = False
        for _ in range(self.max_attempts):
            now = self.clock.now()
            pk = self.pk(lim, now)
            at, reach = self._ahead(lim, now, horizon, lead, not_before)
            planned = algorithm.plan(lim, pk, self._cached(pk), cost, at, reach, lease_id)
            if isinstance(planned, algorithm.Refusal):
                if lim.kind == "concurrency" and not refreshed:
                    # Leases are released by others: never refuse on a stale view of them.
                    self._remember(pk, self.store.get(pk))
                    refreshed = True
                    continue
                return planned
            ok, item = self.store.apply(planned)
            self._remember(pk, item)
            if ok:
                windowed = item and isinstance(planned, algorithm.WindowOp)
                start = float(item["tat"]) - planned.inc if windowed else now  # type: ignore[index, attr-defined]
                return planned, item, start
            refused = algorithm.refusal(lim, planned, item, at)
            if refused is not None:
                return refused
        # Endless contention: refuse (fail closed) with the shortest honest wait.
        return algorithm.Refusal(lim.per_seconds / lim.capacity, lim.name)

    def used_today(self, limit_name: str) -> int:
        """Units counted today by a `utc_day` limit (FreeRequestsRemaining falls back to this)."""
        lim = next(lim for lim in self.limits if lim.name == limit_name)
        state = self.store.get(self.pk(lim, self.clock.now()))
        return int((state or {}).get("count", 0))

    def acquire(self, *, blocking: bool = True) -> bool:
        grant = self.try_acquire(horizon=self.max_wait_s if blocking else 0.0)
        if grant.granted:
            self.clock.sleep(grant.wait_s)
            return True
        if blocking:
            raise RateLimited(grant.wait_s, limit=grant.refused_by, key=self.key)
        return False

    async def aacquire(self, *, blocking: bool = True) -> bool:
        grant = await asyncio.to_thread(self.try_acquire, horizon=self.max_wait_s if blocking else 0.0)
        if grant.granted:
            if grant.wait_s > 0:
                await asyncio.sleep(grant.wait_s)
            return True
        if blocking:
            raise RateLimited(grant.wait_s, limit=grant.refused_by, key=self.key)
        return False
