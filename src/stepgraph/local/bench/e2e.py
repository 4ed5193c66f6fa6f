"""Benchmark: 100 items x 3 nodes through the local stack (moto + DynamoDB Local + the simulator)."""

from __future__ import annotations

import bisect
import io
import statistics
from typing import Any

import typer
from rich.console import Console

from stepgraph.local.bench.report import BenchResult, print_result


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


def _bound_figures(result: BenchResult, run: Any, rpm: int, time_scale: float, label: str, goal: str) -> None:
    window = 60 * time_scale
    result.add(f"wall time, {label}", run.elapsed_s, "s")
    result.add(f"provider requests, {label}", run.requests, "requests")
    result.add(f"429s answered, {label}", run.rate_limited, "requests")
    used = len(run.request_ts) / run.elapsed_s / (rpm / window)
    result.add(f"fraction of the limit used, whole run, {label}", used, "of limit")
    result.add(
        f"fraction of the limit used while items queue, {label}",
        steady_fraction(run.request_ts, window, rpm),
        "of limit",
        goal=goal,
    )


def run(
    items: int = 100,
    rpm: int = 30,
    open_rpm: int = 1200,
    time_scale: float = 0.05,
    bound_items: int = 40,
    bound_rpm: int = 60,
    bound_scale: float = 0.5,
) -> BenchResult:
    """Three batches: one under a limit loose enough that the stack itself is the bottleneck (wall time),
    and two under a limit that binds (how much of it the limiter lets through): 20x compressed, where the
    one-process stack's own jitter shows, and at half speed, where only the limit binds."""
    fast = _run(items, open_rpm, time_scale)
    compressed = _run(items, rpm, time_scale)
    bound = _run(bound_items, bound_rpm, bound_scale)
    result = BenchResult(
        "e2e",
        f"stepgraph bench e2e --items {items} --rpm {rpm} --open-rpm {open_rpm} "
        f"--bound-items {bound_items} --bound-rpm {bound_rpm} --bound-scale {bound_scale}",
    )
    result.add(f"wall time, {items} items, limit {open_rpm}/min", fast.elapsed_s, "s", goal="<= 60")
    result.add(f"throughput, limit {open_rpm}/min", (items - fast.failed) / fast.elapsed_s, "items/s")
    minute = 60 * time_scale
    _bound_figures(result, compressed, rpm, time_scale, f"{items} items, {rpm}/{minute:g} s", "")
    _bound_figures(
        result,
        bound,
        bound_rpm,
        bound_scale,
        f"{bound_items} items, {bound_rpm}/{60 * bound_scale:g} s",
        ">= 0.95",
    )
    runs = (fast, compressed, bound)
    result.add("window violations", sum(r.window_violations for r in runs), "", goal="0")
    result.add("items failed", sum(r.failed for r in runs), "", goal="0")
    result.notes.append(
        "document_pipeline (draft, critique, revise; about 5 model calls per item), 40 items at once, the "
        "simulator in its own process. The whole-run fraction includes start-up and the tail; the other counts "
        "provider windows until 80% of the requests were sent. The local stack runs each Lambda function in "
        "its own worker processes, as Lambda does; compressed "
        f"{1 / time_scale:g}x (a {minute:g}-s minute, 10 requests/s) a send that leaves late (a worker "
        "descheduled on a busy machine) is a larger share of the window than at half speed, where only the "
        "limit binds. A throttled item waits at least 1 s in the state "
        "machine (Wait takes whole seconds)."
    )
    return result


def cli(
    items: int = typer.Option(100, min=1, help="Items in the batch"),
    rpm: int = typer.Option(30, min=1, help="The binding limit of the compressed run (per 3-s minute)"),
    open_rpm: int = typer.Option(1200, min=1, help="The loose limit of the wall-time run"),
    bound_items: int = typer.Option(40, min=1, help="Items in the half-speed run"),
    bound_rpm: int = typer.Option(60, min=1, help="The binding limit of the half-speed run"),
    bound_scale: float = typer.Option(0.5, min=0.01, max=1.0, help="Time scale of the half-speed run"),
) -> None:
    print_result(
        run(items, rpm, open_rpm, bound_items=bound_items, bound_rpm=bound_rpm, bound_scale=bound_scale)
    )
