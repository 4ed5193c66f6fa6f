"""Per-deployment progress for `stepgraph status`: the run's counters per deployment, with any limit
learned from the provider and the state of the deployment's circuit breaker (a few reads of the limiter
table, one per deployment and record; nothing grows with the batch)."""

from __future__ import annotations

from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.limiter.breaker import SUFFIX as BREAKER
from stepgraph.limiter.learned import SUFFIX as LEARNED
from stepgraph.limiter.store import DynamoDBStore


def deployment_status(
    client: Any, table: str, counts: dict[str, dict[str, int]], *, run_id: str, clock: Clock = SYSTEM_CLOCK
) -> dict[str, dict[str, Any]]:
    """`{provider:account:model: {attempts, ok, tokens, learned_limits?, breaker?}}`."""
    store = DynamoDBStore(table, client)
    now = clock.now()
    out: dict[str, dict[str, Any]] = {}
    for dep, numbers in sorted(counts.items()):
        row: dict[str, Any] = dict(numbers)
        provider, account, _ = dep.split(":", 2)
        learned: dict[str, int] = {}
        for key in (f"{provider}:{account}", dep):  # free models share the account's key, paid their own
            for name, entry in ((store.get(key + LEARNED) or {}).get("caps") or {}).items():
                if float(entry.get("until", 0)) > now:
                    learned[name] = int(entry["capacity"])
        if learned:
            row["learned_limits"] = learned
        health = store.get(dep + BREAKER) or {}
        if run_id in (health.get("retired") or {}):
            row["breaker"] = f"retired for this run: {health['retired'][run_id]}"
        elif float(health.get("open_until", 0)) > now:
            row["breaker"] = f"open for {float(health['open_until']) - now:.0f} s"
        out[dep] = row
    return out
