"""What a limiter knows without asking the table: the items it last read or wrote (each write's answer),
the refusals they already show (no write needed), and `peek`, a pool's cheap look at every member. A mixin
of `DynamoDBRateLimiter`."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from stepgraph.limiter import algorithm
from stepgraph.limiter.limits import Limit
from stepgraph.limiter.parts import LimiterParts

Costs = Mapping[str, int] | int


class CachedView(LimiterParts):
    token_view_s: float
    read_at: float
    _cache: dict[str, dict[str, Any] | None]
    _seen_at: dict[str, float]
    _lock: threading.Lock

    def _costs(self, costs: Costs) -> dict[str, int]:
        raise NotImplementedError

    def _cached(self, pk: str) -> dict[str, Any] | None:
        with self._lock:
            return self._cache.get(pk)

    def _remember(self, pk: str, item: dict[str, Any] | None) -> None:
        with self._lock:
            self._cache[pk] = item
            self.read_at = self._seen_at[pk] = self.clock.now()

    def _reread_stale_tokens(self, lim: Limit, pk: str, now: float) -> bool:
        """Re-read a token window's item when this caller's view of it is older than `token_view_s`
        (True when it did): the refunds of others' reconciles make a busy token window free again
        without this caller seeing it, and a refusal from that view turns callers away from
        capacity that is there (a pool then leaves a token-limited deployment idle)."""
        if lim.unit != "tokens" or lim.kind != "sliding":
            return False
        with self._lock:
            seen = self._seen_at.get(pk, float("-inf"))
        if now - seen < self.token_view_s:
            return False
        self._remember(pk, self.store.get(pk))
        return True

    def peek(self, costs: Costs = 1, *, project: bool = False) -> tuple[float, int | None]:
        """From what this caller last read, no store call: (seconds until a slot could be free, a lower
        bound; requests left today by the tightest day counter, None without one). `project`: assume a
        window busy when last read stayed as busy since (its backlog then is its wait now), a better
        guess than the lower bound under contention, when others keep filling it."""
        want = self._costs(costs)
        now = self.clock.now()
        wait, room = 0.0, None
        for lim in self._paced.values():
            known = self._cached(self.pk(lim, now)) or {}
            if lim.kind == "sliding" and "tat" in known:
                tat = float(known["tat"])
                backlog = tat - self.read_at
                wait = max(wait, backlog if project and backlog > 0 and now > self.read_at else tat - now)
            elif lim.kind == "utc_day":
                left = lim.capacity - int(known.get("count", 0))
                if left < want[lim.name]:
                    wait = max(wait, algorithm.seconds_to_next_utc_day(now, algorithm.day_length(lim)))
                if lim.unit == "requests":
                    room = left if room is None else min(room, left)
            elif lim.kind == "concurrency":
                leases = algorithm.live_leases(known, now)
                if len(leases) >= lim.capacity:
                    wait = max(wait, min(leases.values()) - now)
        return max(0.0, wait), room

    def _sure_refusal(self, op: algorithm.Op) -> bool:
        assert isinstance(op, algorithm.WindowOp | algorithm.CountOp | algorithm.LeaseOp)
        return op.sure_refusal(self._cached(op.pk) or {})

    def _cached_wait(self, lim: Limit, now: float, horizon: float) -> float:
        known = self._cached(self.pk(lim, now)) or {}
        if lim.kind == "utc_day":
            return algorithm.seconds_to_next_utc_day(now, algorithm.day_length(lim))
        return float(known["tat"]) - now - horizon
