"""What a limiter settles after a decision: a refused request's partial takes, concurrency leases, the
difference between a token estimate and the real count (`reconcile`), and a send that left late after its
slot (`sent`). A mixin of `DynamoDBRateLimiter`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepgraph.limiter import algorithm
from stepgraph.limiter.limits import Grant, Limit, LimiterUnavailable
from stepgraph.limiter.parts import LimiterParts


class GiveBack(LimiterParts):
    max_attempts: int
    late_s: float

    def _undo(
        self, taken: list[tuple[Limit, str, algorithm.Op, dict[str, Any] | None]], lease_id: str
    ) -> None:
        """Give back what a partly granted request took, so a refusal leaves nothing taken."""
        for lim, pk, op, item in reversed(taken):
            if isinstance(op, algorithm.WindowOp) and item:
                # Retract a window slot only while we are still the end of the queue; otherwise the
                # slot stays vacant (it costs a little throughput, never a window overrun).
                self.store.add(pk, "tat", -op.inc, if_equals=float(item["tat"]))
            elif isinstance(op, algorithm.CountOp):
                self.store.add(pk, "count", -op.inc)
            elif isinstance(op, algorithm.LeaseOp):
                self._drop_lease(lim, pk, lease_id)
            self._remember(pk, None)

    def _undo_quietly(
        self, taken: list[tuple[Limit, str, algorithm.Op, dict[str, Any] | None]], lease_id: str
    ) -> None:
        """Best-effort undo when the store failed mid-request: what cannot be given back now (the store
        is down) stays taken, costing a little capacity rather than the error the caller needs to see."""
        for entry in reversed(taken):
            try:
                self._undo([entry], lease_id)
            except LimiterUnavailable:
                continue

    def _drop_lease(self, lim: Limit, pk: str, lease_id: str) -> None:
        for _ in range(self.max_attempts):
            now = self.clock.now()
            current = self.store.get(pk)
            leases = algorithm.live_leases(current, now)
            if lease_id not in (current or {}).get("leases", {}):
                return
            leases.pop(lease_id, None)
            op = algorithm.LeaseOp(
                pk,
                int(now + lim.per_seconds + 3600),
                state={"leases": leases},
                version=int((current or {}).get("v", 0)),
            )
            ok, item = self.store.apply(op)
            self._remember(pk, item)
            if ok:
                return

    def reconcile(self, grant: Grant, actual_costs: Mapping[str, int]) -> None:
        """Charge or refund the difference between the estimate and what the call really used."""
        if not grant.granted:
            return
        for lim in self.limits:
            if lim.name not in actual_costs or lim.kind == "concurrency":
                continue
            delta = int(actual_costs[lim.name]) - grant.costs.get(lim.name, 0)
            if delta == 0:
                continue
            if lim.kind == "utc_day":
                day = grant.day or algorithm.utc_day(self.clock.now(), algorithm.day_length(lim))
                pk = f"{self.key}#{lim.name}#{day}"
                self.store.add(pk, "count", delta)
                self._remember(self.pk(lim, self.clock.now()), None)
            else:
                interval = algorithm.token_interval(self._paced[lim.name], grant.costs.get(lim.name, 0))
                self._move_window(f"{self.key}#{lim.name}", delta * interval)

    def _move_window(self, pk: str, seconds: float) -> None:
        """Move a sliding window's schedule (`tat`) by `seconds`, unconditionally; forget our view of it."""
        self.store.add(pk, "tat", seconds)
        self._remember(pk, None)

    def sent(self, grant: Grant, at: float) -> bool:
        """Settle when a granted request really left (`at`, epoch s); True when the schedule moved.

        A send later than `late_s` after its slot (a write that came back late, a process woken late)
        sits closer to the sends paced after it than their spacing allows: a provider's window that
        opens on it would hold one request too many. Every sliding window it was paced on moves back by
        its lateness (one add each, no condition), so the slots handed out from now on keep their
        spacing from the real send. The slots it could crowd lie a window after it; those handed out
        already lie within the horizon, which is shorter."""
        late = at - grant.send_at
        if not grant.granted or not grant.send_at or late <= self.late_s:
            return False
        for lim in self.limits:
            if lim.kind == "sliding" and grant.costs.get(lim.name, 0) > 0:
                self._move_window(self.pk(lim, at), late)
        return True

    def release(self, grant: Grant) -> None:
        """Give back the concurrency lease of a finished call (an unreleased lease expires by itself)."""
        if not grant.granted or not grant.lease_id:
            return
        for lim in self.limits:
            if lim.kind == "concurrency":
                pk = self.pk(lim, self.clock.now())
                self._drop_lease(lim, pk, grant.lease_id)
