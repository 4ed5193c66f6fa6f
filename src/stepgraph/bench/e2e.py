"""Benchmark: 100 items x 3 nodes through the local stack (moto + DynamoDB Local + the simulator)."""

from __future__ import annotations

import bisect
import io
import statistics
from typing import Any

import typer
from rich.console import Console

from stepgraph.bench.report import BenchResult, print_result


def steady_fraction(ts: list[float], window_s: float, limit: int, busy: float = 0.8) -> float:
    """Mean requests per provider window over the busy part of the run (until `busy` of the requests
    were sent, while more items wait than run), as a fraction of the limit. Start-up and the tail, where
    the last items trickle out and the limit no longer binds, are left out."""
    if len(ts) < 2:
        return 0.0
    start, end = ts[0], ts[int(len(ts) * busy) - 1]
    if end - start < window_s:
        return len(ts) / limit
    counts, t = [], start
    while t + window_s <= end:
        counts.append(bisect.bisect_left(ts, t + window_s) - bisect.bisect_left(ts, t))
        t += window_s / 4
    return statistics.fmean(counts) / limit


def _run(items: int, rpm: int, time_scale: float) -> Any:
    from stepgraph.local.demo import DemoOptions, run_demo

    opts = DemoOptions(items=items, rpm=rpm, faults="none", time_scale=time_scale, concurrency=40)
    return run_demo(opts, Console(file=io.StringIO()))


def run(items: int = 100, rpm: int = 30, open_rpm: int = 1200, time_scale: float = 0.05) -> BenchResult:
    """Two batches: one under a limit loose enough that the stack itself is the bottleneck (wall time),
    one under a limit that binds (how much of it the limiter lets through)."""
    window = 60 * time_scale
    fast = _run(items, open_rpm, time_scale)
    bound = _run(items, rpm, time_scale)
    result = BenchResult("e2e", f"stepgraph bench e2e --items {items} --rpm {rpm} --open-rpm {open_rpm}")
    result.add(f"wall time, limit {open_rpm}/min", fast.elapsed_s, "s", goal="<= 60")
    result.add(f"throughput, limit {open_rpm}/min", (items - fast.failed) / fast.elapsed_s, "items/s")
    result.add(f"wall time, limit {rpm}/min", bound.elapsed_s, "s")
    result.add("provider requests (bound run)", bound.requests, "requests")
    result.add("429s answered (bound run)", bound.rate_limited, "requests")
    used = len(bound.request_ts) / bound.elapsed_s / (rpm / window)
    result.add("fraction of the rate limit used, whole run", used, "of limit")
    result.add(
        "fraction of the rate limit used while items queue",
        steady_fraction(bound.request_ts, window, rpm),
        "of limit",
        goal=">= 0.95",
    )
    result.add("window violations", fast.window_violations + bound.window_violations, "", goal="0")
    result.add("items failed", fast.failed + bound.failed, "", goal="0")
    result.notes.append(
        f"document_pipeline (draft, critique, revise; about 5 model calls per item), 40 items at once, a "
        f"provider minute of {window:g} s. The whole-run fraction includes start-up and the tail; the other "
        "counts provider windows until 80% of the requests were sent. The local stack runs moto, the handlers "
        "and the simulator in one Python process, so on 2 cores its own CPU caps it near 15 requests/s; a "
        "throttled item waits at least 1 s in the state machine (Wait takes whole seconds), a third of a "
        "scaled minute."
    )
    return result


def cli(
    items: int = typer.Option(100, min=1, help="Items in the batch"),
    rpm: int = typer.Option(30, min=1, help="The binding limit: requests per (scaled, 3 s) minute"),
    open_rpm: int = typer.Option(1200, min=1, help="The loose limit of the wall-time run"),
) -> None:
    print_result(run(items, rpm, open_rpm))
