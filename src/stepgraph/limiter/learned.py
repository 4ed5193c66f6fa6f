"""Limits learned from the provider, shared by every worker of one limiter key (a provider account).

The item `{key}#learned` holds `{"caps": {limit name: {"capacity", "until", "reason"}}}`. A lowering is
never above the configured profile, only replaces a higher (or expired) one, and lapses at `until`
(`quiet_s` after the last lowering), when the profile's limit applies again. `strikes` (limit name: recent
429 times) is the evidence a 429 alone gives: see `strike`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stepgraph.clock import Clock
from stepgraph.limiter.limits import LimiterUnavailable
from stepgraph.limiter.shared import SharedRecord
from stepgraph.limiter.store import Store

log = logging.getLogger(__name__)
SUFFIX = "#learned"


@dataclass(frozen=True)
class LearnedLimit:
    name: str
    capacity: int
    until: float
    reason: str


class LearnedLimits:
    """Args: `store` (a callable returning the limiter's store), `key` the limiter key, `quiet_s` how long
    a lowering lasts after the last evidence, `refresh_s` how often workers re-read it."""

    def __init__(
        self,
        store: Callable[[], Store],
        key: str,
        clock: Clock,
        *,
        quiet_s: float = 600.0,
        refresh_s: float = 5.0,
    ) -> None:
        self.key, self.clock, self.quiet_s = key, clock, quiet_s
        self.record = SharedRecord(store, key + SUFFIX, clock, refresh_s=refresh_s)

    def current(self) -> dict[str, LearnedLimit]:
        """The lowerings in force now (re-read at most every `refresh_s`; when the table cannot be read,
        the last ones read stand: the limiter's own writes fail closed anyway)."""
        try:
            return self._live(self.record.state())
        except LimiterUnavailable:
            return self.cached()

    def cached(self) -> dict[str, LearnedLimit]:
        return self._live(self.record.cached())

    def _live(self, state: dict[str, Any]) -> dict[str, LearnedLimit]:
        now = self.clock.now()
        out = {}
        for name, entry in (state.get("caps") or {}).items():
            if float(entry.get("until", 0)) > now:
                out[name] = LearnedLimit(
                    name, int(entry["capacity"]), float(entry["until"]), entry.get("reason", "")
                )
        return out

    def strike(self, name: str, *, within_s: float, needed: int) -> bool:
        """Count a 429 on limit `name` that the headers do not explain (they report the very limit in
        force); True once `needed` of them, this one included and from any worker, fall within `within_s`.
        One such 429 is what a send that left late draws at a limit the profile has right (a loaded
        host, a slow network); a profile that is really too generous draws them window after window."""
        now = self.clock.now()
        counted: list[float] = []

        def change(state: dict[str, Any]) -> dict[str, Any]:
            strikes = dict(state.get("strikes") or {})
            recent = [float(t) for t in strikes.get(name, []) if now - float(t) < within_s]
            counted[:] = [*recent[-(needed - 1) :], now] if needed > 1 else [now]
            strikes[name] = counted
            return {**state, "strikes": strikes}

        self.record.change(change, ttl_s=within_s + 3600)
        return len(counted) >= needed

    def lower(self, name: str, capacity: int, *, ceiling: int, reason: str) -> LearnedLimit | None:
        """Lower `name` to `capacity` (clamped to 1..`ceiling`, the profile's) for `quiet_s`; the new
        lowering, or None when one at least as low is already in force (nothing written)."""
        capacity = max(1, min(int(capacity), int(ceiling)))
        if capacity >= ceiling:
            return None
        known = self.cached().get(name)
        if known is not None and known.capacity <= capacity:
            return None
        until = self.clock.now() + self.quiet_s

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            caps = dict(state.get("caps") or {})
            entry = caps.get(name)
            if (
                entry
                and float(entry.get("until", 0)) > self.clock.now()
                and int(entry["capacity"]) <= capacity
            ):
                return None
            caps[name] = {"capacity": capacity, "until": until, "reason": reason[:200]}
            return {**state, "caps": caps}

        if self.record.change(change, ttl_s=self.quiet_s + 3600) is None:
            return None
        log.warning(
            "learned limit: %s %s lowered to %d (%s) for %.0f s",
            self.key,
            name,
            capacity,
            reason,
            self.quiet_s,
        )
        return LearnedLimit(name, capacity, until, reason)
