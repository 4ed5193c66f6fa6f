"""A small shared record in the limiter table, changed by compare-and-swap (`LeaseOp` on a version).

Used for what every worker of a batch must see the same way but that changes rarely: a deployment's
learned limits and its circuit breaker. Reads are cached for `refresh_s` (a read, never a write).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from stepgraph.clock import Clock
from stepgraph.limiter.algorithm import LeaseOp, State
from stepgraph.limiter.store import Store

Change = Callable[[State], State | None]  # the new state, or None for "no change needed"


class SharedRecord:
    def __init__(self, store: Callable[[], Store], pk: str, clock: Clock, *, refresh_s: float) -> None:
        self._store, self.pk, self.clock, self.refresh_s = store, pk, clock, refresh_s
        self._seen: State | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def state(self, *, fresh: bool = False) -> State:
        """The record as last read (re-read when older than `refresh_s`, or `fresh`)."""
        now = self.clock.now()
        with self._lock:
            stale = fresh or now - self._read_at >= self.refresh_s
        if stale:
            with self._lock:
                self._read_at = now  # one failed read is not retried by every call that follows
            item = self._store().get(self.pk)
            with self._lock:
                self._seen = item
        with self._lock:
            return dict(self._seen or {})

    def cached(self) -> State:
        with self._lock:
            return dict(self._seen or {})

    def change(self, fn: Change, *, ttl_s: float, attempts: int = 8) -> State | None:
        """Apply `fn` to the current state under a version check; the state written, or None when `fn`
        said nothing needs changing. Retries on a concurrent change with the item the write returned."""
        current: State | None = self.state(fresh=True)
        for _ in range(attempts):
            base = {k: v for k, v in (current or {}).items() if k not in ("pk", "v", "ttl")}
            new = fn(dict(base))
            if new is None:
                return None
            version = int((current or {}).get("v", 0))
            op = LeaseOp(self.pk, int(self.clock.now() + ttl_s), state=new, version=version)
            ok, item = self._store().apply(op)
            with self._lock:
                self._read_at = self.clock.now()
                self._seen = {**new, "v": version + 1} if ok else item
            if ok:
                return new
            current = item
        return None

    def remember(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._seen, self._read_at = state, self.clock.now()
