"""A circuit breaker per deployment, shared by every worker through the limiter table.

Item `{health_key}#breaker`: `fails` consecutive failures since `since`; `open_until` while open;
`probe_until` while one worker's half-open probe is in flight; `retired` maps a run (execution id) to why
a deployment is out for that run (a 404 "model not found").

- `threshold` consecutive failures (5xx, timeouts, connection errors) within `window_s` open it for
  `cooldown_s`: every worker then skips the deployment without spending an attempt;
- after the cooldown one worker wins the probe (a conditional write); its success closes the breaker,
  its failure opens it again; the others keep skipping while the probe is in flight;
- a success with nothing recorded costs no write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stepgraph.clock import Clock
from stepgraph.limiter.limits import LimiterUnavailable
from stepgraph.limiter.shared import SharedRecord
from stepgraph.limiter.store import Store

log = logging.getLogger(__name__)
SUFFIX = "#breaker"


class CircuitBreaker:
    def __init__(
        self,
        store: Callable[[], Store],
        key: str,
        clock: Clock,
        *,
        threshold: int = 3,
        window_s: float = 60.0,
        cooldown_s: float = 60.0,
        probe_s: float = 30.0,
        refresh_s: float = 2.0,
    ) -> None:
        self.key, self.clock = key, clock
        self.threshold, self.window_s, self.cooldown_s, self.probe_s = (
            threshold,
            window_s,
            cooldown_s,
            probe_s,
        )
        self.record = SharedRecord(store, key + SUFFIX, clock, refresh_s=refresh_s)
        self._probing = False  # this worker holds the half-open probe

    def _ttl(self) -> float:
        return self.window_s + self.cooldown_s + 86_400  # retirements last for a day's runs

    def status(self, run_id: str = "") -> str:
        """`closed`, `open`, `half_open` (a probe may go), `probing` (another's probe in flight) or
        `retired` (for `run_id`), from the record as last read."""
        try:
            state = self.record.state()
        except LimiterUnavailable:
            state = self.record.cached()  # the table is down: the last state read stands
        now = self.clock.now()
        if run_id and run_id in (state.get("retired") or {}):
            return "retired"
        if float(state.get("open_until", 0)) > now:
            return "open"
        if "open_until" in state:
            return (
                "probing" if float(state.get("probe_until", 0)) > now and not self._probing else "half_open"
            )
        return "closed"

    def allow(self, run_id: str = "") -> bool:
        """May this worker send now? Claims the half-open probe when the cooldown is over."""
        status = self.status(run_id)
        if status == "closed":
            return True
        if status != "half_open":
            return False
        if self._probing:
            return True
        now = self.clock.now()

        def claim(state: dict[str, Any]) -> dict[str, Any] | None:
            if float(state.get("open_until", 0)) > now or float(state.get("probe_until", 0)) > now:
                return None
            if "open_until" not in state:
                return None
            return {**state, "probe_until": now + self.probe_s}

        self._probing = self.record.change(claim, ttl_s=self._ttl()) is not None
        return self._probing or self.status(run_id) == "closed"

    def record_failure(self) -> bool:
        """Count one failure; True when it opened the breaker."""
        now = self.clock.now()
        probing, self._probing = self._probing, False
        opened = [False]

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            fresh = now - float(state.get("since", now)) > self.window_s or "since" not in state
            fails = 1 if fresh else int(state.get("fails", 0)) + 1
            out = {k: v for k, v in state.items() if k != "probe_until"}
            out.update(fails=fails, since=now if fresh else state["since"])
            if probing or fails >= self.threshold:
                out.update(fails=0, open_until=now + self.cooldown_s)
                opened[0] = True
            return out

        self.record.change(change, ttl_s=self._ttl())
        if opened[0]:
            log.warning("circuit breaker of %s open for %.0f s", self.key, self.cooldown_s)
        return opened[0]

    def record_success(self) -> None:
        """Close after a probe, reset the count; no write when the record shows nothing to reset."""
        self._probing = False
        known = self.record.cached()
        if not any(k in known for k in ("fails", "open_until", "probe_until")):
            return

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            if not any(k in state for k in ("fails", "open_until", "probe_until")):
                return None
            return {
                k: v for k, v in state.items() if k not in ("fails", "since", "open_until", "probe_until")
            }

        if self.record.change(change, ttl_s=self._ttl()) is not None and "open_until" in known:
            log.warning("circuit breaker of %s closed", self.key)

    def retire(self, run_id: str, reason: str) -> None:
        """Take the deployment out for the run `run_id` (every worker of that run skips it)."""

        def change(state: dict[str, Any]) -> dict[str, Any] | None:
            retired = dict(state.get("retired") or {})
            if run_id in retired:
                return None
            retired[run_id] = reason[:200]
            return {**state, "retired": retired}

        self.record.change(change, ttl_s=self._ttl())
        log.warning("%s retired for run %s: %s", self.key, run_id, reason[:200])


def make_store_getter(store: Store) -> Callable[[], Store]:
    return lambda: store
