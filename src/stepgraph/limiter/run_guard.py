"""`RunGuard`: the budget guard one item's model calls go through, with the run's own limits beside the
stack's caps.

- `config.budget_usd` caps one execution's paid spend: each paid call reserves its estimate on the run's
  counter with a conditional `ADD` (`spent + estimate <= cap`), after the stack's daily/total caps, exactly
  as `BudgetGuard` does, so parallel items can never reserve past it; `reconcile` books the real cost.
- `config.max_calls_per_item` bounds the provider calls (HTTP attempts) of one item of the run: a counter per
  (execution, item), counted before each attempt, so a graph stuck in a loop ends as `MaxCallsExceeded`
  instead of spending the day's quota. The counter lives in the table, so it holds across steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.errors import StepGraphError
from stepgraph.limiter.algorithm import CountOp
from stepgraph.limiter.budget import MICROS, BudgetExceeded, BudgetGuard, BudgetReservation, to_micros
from stepgraph.limiter.store import LazyStore, Store

TTL_S = 400 * 86_400  # as long as the stack's total counter: `usage report` can read a run's spend later


class MaxCallsExceeded(StepGraphError):
    """An item made `config.max_calls_per_item` provider calls and asked for one more."""

    def __init__(self, item_id: str, cap: int) -> None:
        self.item_id, self.cap = item_id, cap
        super().__init__(
            f"item {item_id} reached config.max_calls_per_item={cap} provider calls",
            hint="a graph loop that does not end? raise max_calls_per_item and `stepgraph retry` the item",
        )


@dataclass
class RunReservation:
    stack: BudgetReservation | None
    micros: int


def run_budget_pk(execution_id: str) -> str:
    return f"budget#run#{execution_id}"


def item_calls_pk(execution_id: str, item_id: str) -> str:
    return f"calls#run#{execution_id}#item#{item_id}"


class RunGuard(LazyStore):
    """The stack's `BudgetGuard` (or None) plus one run's budget and one item's call bound.

    Args:
        table_name: the limiter table; `client` a boto3 DynamoDB client, or `store` (tests: `MemoryStore`).
        execution_id, item_id: whose counters.
        stack: the stack-wide guard, reserved first; None when no stack cap is set.
        budget_usd: the run's paid-spend cap, or None.
        max_calls_per_item: the item's call bound, or None.

    Example:
        >>> guard = RunGuard("stepgraph-limiter", arn, "7", stack=None, budget_usd=2.0, max_calls_per_item=40)
        >>> guard.on_attempt()             # before every HTTP attempt (free ones too)
        >>> r = guard.reserve(0.002)       # before a paid call; raises BudgetExceeded at the cap
        >>> guard.reconcile(r, 0.0013)     # after it
    """

    def __init__(
        self,
        table_name: str,
        execution_id: str,
        item_id: str,
        *,
        stack: BudgetGuard | None = None,
        budget_usd: float | None = None,
        max_calls_per_item: int | None = None,
        client: Any = None,
        store: Store | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.table_name, self.execution_id, self.item_id = table_name, execution_id, item_id
        self.stack, self.budget_usd, self.max_calls = stack, budget_usd, max_calls_per_item
        self.clock = clock or SYSTEM_CLOCK
        self._client, self._store = client, store

    def _ttl(self) -> int:
        return int(self.clock.now() + TTL_S)

    def on_attempt(self) -> None:
        """Count one provider call of the item; raise `MaxCallsExceeded` (counting nothing) past the bound."""
        if self.max_calls is None:
            return
        pk = item_calls_pk(self.execution_id, self.item_id)
        ok, _ = self.store.apply(CountOp(pk, self._ttl(), inc=1, cap=self.max_calls))
        if not ok:
            raise MaxCallsExceeded(self.item_id, self.max_calls)

    def reserve(self, estimated_usd: float) -> RunReservation:
        """Reserve on the stack's caps, then on the run's; a refusal reserves nothing anywhere."""
        stack = self.stack.reserve(estimated_usd) if self.stack is not None else None
        micros = to_micros(max(0.0, estimated_usd))
        if self.budget_usd is None:
            return RunReservation(stack, 0)
        cap = to_micros(self.budget_usd)
        op = CountOp(run_budget_pk(self.execution_id), self._ttl(), inc=micros, cap=cap)
        ok, item = self.store.apply(op)
        if not ok:
            if self.stack is not None and stack is not None:
                self.stack.reconcile(stack, 0.0)  # give the stack's reservation back
            spent = int((item or {}).get("count", 0)) / MICROS
            raise BudgetExceeded(
                "run",
                self.budget_usd,
                spent,
                micros / MICROS,
                hint="raise config.budget_usd and `stepgraph retry` the run's failed items, or use free models",
            )
        return RunReservation(stack, micros)

    def reconcile(self, reservation: RunReservation, actual_usd: float) -> None:
        """Book the real cost in place of the estimates."""
        if self.stack is not None and reservation.stack is not None:
            self.stack.reconcile(reservation.stack, actual_usd)
        if self.budget_usd is not None:
            delta = to_micros(max(0.0, actual_usd)) - reservation.micros
            if delta:
                self.store.add(run_budget_pk(self.execution_id), "count", delta)

    def spent_usd(self) -> float:
        """The run's paid spend booked (or reserved) so far."""
        item = self.store.get(run_budget_pk(self.execution_id))
        return int((item or {}).get("count", 0)) / MICROS
