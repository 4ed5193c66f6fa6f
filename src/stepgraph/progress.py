"""Per-execution counters in the limiter table: provider attempts, spend and items finished.

`stepgraph status` reads one item (`run#{execution name}`) instead of listing and downloading every
usage object of the run, so its cost does not grow with the batch. Each update is one DynamoDB `ADD`
(atomic, no read first), made by a usage-ledger listener for every attempt and by the result store
when an item's result is first created. The usage records stay the source of truth: a counter that
cannot be written is logged and skipped, never a reason to fail the step (a hard kill between the
record and the counter can leave the counter one attempt off; the records and the report are exact).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from stepgraph.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)
NANOS = 1_000_000_000  # billionths of a dollar: a free-tier fraction of a cent stays visible
TTL_S = 400 * 86_400  # as long as the budget guard's total counter
DEPLOYMENT_PREFIX = "dep#"  # counter attributes per deployment: dep#provider:account:model#attempts


class _Costed(Protocol):
    @property
    def cost_usd(self) -> float | None: ...


@dataclass(frozen=True)
class RunCounts:
    attempts: int = 0
    spend_usd: float = 0.0
    items_done: int = 0
    found: bool = False
    # per deployment (`provider:account:model`): {"attempts", "ok", "tokens"}
    deployments: dict[str, dict[str, int]] = field(default_factory=dict)


def run_name(execution_id: str) -> str:
    """The execution name of an execution ARN (the part S3 keys and counters use)."""
    return execution_id.rsplit(":", 1)[-1]


class RunCounters:
    """Counters of one execution: `attempt(record)` is a `UsageLedger` listener."""

    def __init__(
        self, table_name: str, execution_id: str, *, client: Any = None, clock: Clock | None = None
    ) -> None:
        self.table_name, self.name = table_name, run_name(execution_id)
        self._client = client
        self.clock = clock or SYSTEM_CLOCK

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    @property
    def pk(self) -> str:
        return f"run#{self.name}"

    def _add(self, **deltas: int) -> None:
        self._add_named(deltas)

    def _add_named(self, deltas: dict[str, int]) -> None:
        # Attribute names stand behind placeholders (#a0, ...): a deployment's name holds ':' and '/'.
        keys = list(deltas)
        names = {f"#a{i}": k for i, k in enumerate(keys)} | {"#t": "ttl"}
        values = {f":a{i}": {"N": str(deltas[k])} for i, k in enumerate(keys)}
        values[":ttl"] = {"N": str(int(self.clock.now() + TTL_S))}
        adds = ", ".join(f"#a{i} :a{i}" for i in range(len(keys)))
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"pk": {"S": self.pk}},
                UpdateExpression=f"ADD {adds} SET #t = :ttl",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except Exception as exc:  # a counter is a cheap view; the usage records stay exact
            log.warning("run counter %s not updated (%s: %s)", self.pk, type(exc).__name__, exc)

    def __call__(self, record: _Costed) -> None:
        self.attempt(record)

    def attempt(self, record: _Costed) -> None:
        nanos = round(max(0.0, record.cost_usd or 0.0) * NANOS)
        deltas = {"attempts": 1, "cost_nanos": nanos}
        deployment = getattr(record, "deployment", "")
        if deployment:  # the same single ADD also counts the attempt for its deployment
            provider, _, model = deployment.partition(":")
            dep = f"{DEPLOYMENT_PREFIX}{provider}:{getattr(record, 'account', '') or 'main'}:{model}"
            deltas[f"{dep}#attempts"] = 1
            deltas[f"{dep}#ok"] = int(getattr(record, "status", "") == "ok")
            deltas[f"{dep}#tokens"] = int(getattr(record, "total_tokens", 0) or 0)
        self._add_named(deltas)

    def item_done(self) -> None:
        self._add(items_done=1)

    def read(self) -> RunCounts:
        item = self.client.get_item(
            TableName=self.table_name, Key={"pk": {"S": self.pk}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return RunCounts()

        def num(field: str) -> int:
            return int(item.get(field, {}).get("N", "0"))

        deployments: dict[str, dict[str, int]] = {}
        for name in item:
            if name.startswith(DEPLOYMENT_PREFIX) and "#" in name[len(DEPLOYMENT_PREFIX) :]:
                dep, _, what = name[len(DEPLOYMENT_PREFIX) :].rpartition("#")
                deployments.setdefault(dep, {"attempts": 0, "ok": 0, "tokens": 0})[what] = num(name)
        return RunCounts(
            attempts=num("attempts"),
            spend_usd=round(num("cost_nanos") / NANOS, 9),
            items_done=num("items_done"),
            found=True,
            deployments=deployments,
        )
