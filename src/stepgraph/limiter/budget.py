"""`BudgetGuard`: a hard cap on spend per UTC day and in total, shared by every process.

Amounts are integer micro-dollars. A paid call reserves its estimated cost first with a conditional
`ADD` per counter (`spent + estimate <= cap`), day first, then total (a refused total gives the day
back), so concurrent callers can never reserve past a cap; after the call `reconcile` books the real
cost. Free models never call it. The only overshoot possible is a call whose real cost exceeds its
estimate: estimate from `max_tokens` to keep that at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.errors import ConfigError, StepGraphError
from stepgraph.limiter.algorithm import CountOp, utc_day
from stepgraph.limiter.store import LazyStore, Store

MICROS = 1_000_000
NO_CAP = 10**15


def to_micros(usd: float) -> int:
    return math.ceil(round(usd * MICROS, 6))


class BudgetExceeded(StepGraphError):
    def __init__(
        self,
        scope: str,
        cap_usd: float,
        spent_usd: float,
        wanted_usd: float,
        *,
        hint: str = "raise the budget (daily_budget_usd / total_budget_usd) or use free models",
    ) -> None:
        self.scope, self.cap_usd, self.spent_usd = scope, cap_usd, spent_usd
        super().__init__(
            f"{scope} budget of ${cap_usd:.4f} would be exceeded: ${spent_usd:.4f} spent or reserved, "
            f"this call needs up to ${wanted_usd:.4f}",
            hint=hint,
        )


@dataclass
class BudgetReservation:
    micros: int
    day: str


class BudgetGuard(LazyStore):
    """Spend caps in USD (per UTC day and in total) shared by every worker through the limiter table.

    Args:
        table_name: the limiter table (the guard's counters live under `budget#{key}#...`).
        key: which budget (e.g. `"spend"`, one per stack).
        daily_cap_usd, total_cap_usd: the caps; None means no cap of that kind.
        client: a boto3 DynamoDB client; `store` replaces the table (tests pass a `MemoryStore`).
        clock: injected time.

    Returns (from `reserve`): a `BudgetReservation` to `reconcile` with the real cost; `reserve`
    raises `BudgetExceeded` (and reserves nothing) when a cap would be passed.

    Example:
        >>> guard = BudgetGuard("stepgraph-limiter", "spend", daily_cap_usd=5.0)
        >>> r = guard.reserve(0.002)            # before the call
        >>> guard.reconcile(r, actual_usd=0.0013)  # after it
    """

    def __init__(
        self,
        table_name: str,
        key: str,
        *,
        daily_cap_usd: float | None = None,
        total_cap_usd: float | None = None,
        client: Any = None,
        clock: Clock | None = None,
        store: Store | None = None,
    ) -> None:
        for name, cap in (("daily_cap_usd", daily_cap_usd), ("total_cap_usd", total_cap_usd)):
            if cap is not None and cap < 0:
                raise ConfigError(f"budget {key!r}: {name} must be >= 0 (got {cap})")
        self.table_name, self.key = table_name, key
        self.caps = {"daily": daily_cap_usd, "total": total_cap_usd}
        self.clock = clock or SYSTEM_CLOCK
        self._client, self._store = client, store

    def _pk(self, scope: str, day: str) -> str:
        return f"budget#{self.key}#day#{day}" if scope == "daily" else f"budget#{self.key}#total"

    def reserve(self, estimated_usd: float) -> BudgetReservation:
        """Reserve the estimated cost against every cap, or raise `BudgetExceeded` and reserve nothing."""
        now = self.clock.now()
        day = utc_day(now)
        micros = to_micros(max(0.0, estimated_usd))
        done: list[str] = []
        for scope in ("daily", "total"):
            cap = self.caps[scope]
            cap_micros = NO_CAP if cap is None else to_micros(cap)
            ttl = int(now + (3 * 86_400 if scope == "daily" else 400 * 86_400))
            ok, item = self.store.apply(CountOp(self._pk(scope, day), ttl, inc=micros, cap=cap_micros))
            if not ok:
                for prior in done:
                    self.store.add(prior, "count", -micros)
                spent = int((item or {}).get("count", 0)) / MICROS
                raise BudgetExceeded(scope, cap or 0.0, spent, micros / MICROS)
            done.append(self._pk(scope, day))
        return BudgetReservation(micros, day)

    def reconcile(self, reservation: BudgetReservation, actual_usd: float) -> None:
        """Book the real cost in place of the estimate (refund or extra charge)."""
        delta = to_micros(max(0.0, actual_usd)) - reservation.micros
        if delta:
            for scope in ("daily", "total"):
                self.store.add(self._pk(scope, reservation.day), "count", delta)

    def _spent(self, scope: str) -> float:
        item = self.store.get(self._pk(scope, utc_day(self.clock.now())))
        return int((item or {}).get("count", 0)) / MICROS

    def spent_today_usd(self) -> float:
        return self._spent("daily")

    def spent_total_usd(self) -> float:
        return self._spent("total")
