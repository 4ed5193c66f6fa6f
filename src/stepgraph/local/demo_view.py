"""What `stepgraph demo` shows: the live progress table (one provider, or the pool's) and the failed items
at the end, read from the run's own records."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from stepgraph import resources
from stepgraph.local.stack import LocalStack
from stepgraph.progress import RunCounters


def failed_items(stack: LocalStack, run: str) -> list[dict[str, Any]]:
    """The failure records the state machine wrote for the run's items, in item order."""
    s3 = stack.client("s3")
    rows = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.bucket, Prefix=f"{resources.PREFIX_FAILURES}{run}/"
    ):
        for obj in page.get("Contents", []):
            try:
                rows.append(json.loads(s3.get_object(Bucket=stack.bucket, Key=obj["Key"])["Body"].read()))
            except (json.JSONDecodeError, TypeError):
                rows.append(
                    {
                        "item_id": obj["Key"].rsplit("/", 1)[-1].removesuffix(".json"),
                        "error": "unreadable record",
                    }
                )
    return sorted(rows, key=lambda r: (len(str(r.get("item_id"))), str(r.get("item_id"))))


def cause_text(cause: Any) -> str:
    """A Lambda error's cause is JSON; its errorMessage is what a person reads."""
    text = str(cause or "")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return text
    return str(parsed.get("errorMessage", text)) if isinstance(parsed, dict) else text


def print_failures(console: Console, failures: list[dict[str, Any]], shown: int = 10) -> None:
    for f in failures[:shown]:
        console.print(
            f"  item {f.get('item_id')}: {f.get('error')}: {cause_text(f.get('cause'))}",
            markup=False,
            highlight=False,
        )
    if len(failures) > shown:
        console.print(
            f"  ... and {len(failures) - shown} more failed items (failures/ under the run)", highlight=False
        )


def _head(stack: LocalStack, counters: RunCounters, total: int, title: str) -> Table:
    """Both tables' first rows: items done and the graph-step calls by how they ended."""
    # One counter read per refresh, whatever the batch size (a listing page stops at 1,000 keys).
    steps = [i for i in stack.invocations if i["function"] == resources.GRAPH_STEP_FUNCTION]
    by = {k: sum(1 for s in steps if s.get("status") == k) for k in ("throttled", "running")}
    table = Table(title=title, show_header=False)
    table.add_row("items done", f"{read_done(counters)} / {total}")
    table.add_row(
        "graph-step calls",
        f"{len(steps)} (throttled {by['throttled']}, running {by['running']}, "
        f"errors {sum(1 for s in steps if not s['ok'])})",
    )
    return table


def progress_table(
    stack: LocalStack, counters: RunCounters, sim: Any, total: int, run: str, started: float, rpm: int
) -> Table:
    table = _head(stack, counters, total, f"stepgraph demo — execution {run}")
    stats = sim.stats()
    account = stats["accounts"]["default"]
    table.add_row(
        "provider requests",
        f"{stats['requests']} (429s {stats['rate_limited']}, errors {sum(stats['errors_by_status'].values()) - stats['rate_limited']})",
    )
    table.add_row(
        "most in any window", f"{account['max_in_window']} / limit {rpm} per {account['window_s']:g} s"
    )
    table.add_row("spend", f"${account['usage_usd']:.6f}")
    table.add_row("elapsed", f"{time.monotonic() - started:.1f} s")
    return table


def pool_progress_table(
    stack: LocalStack, counters: RunCounters, sim: Any, total: int, run: str, started: float
) -> Group:
    from stepgraph.local.demo_pool import provider_rows

    head = _head(stack, counters, total, f"stepgraph demo --pool — execution {run}")
    head.add_row("elapsed", f"{time.monotonic() - started:.1f} s")
    return Group(head, provider_rows(sim.stats()))


def read_done(counters: RunCounters) -> int:
    try:
        return counters.read().items_done
    except Exception:  # the table is being torn down at the very end: show nothing rather than fail
        return 0
