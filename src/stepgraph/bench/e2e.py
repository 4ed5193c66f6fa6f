"""Benchmark: 100 items x 3 nodes through the local stack (moto + DynamoDB Local + the simulator)."""

from __future__ import annotations

import io

import typer
from rich.console import Console

from stepgraph.bench.report import BenchResult, print_result


def run(items: int = 100, rpm: int = 60, time_scale: float = 0.05) -> BenchResult:
    from stepgraph.local.demo import DemoOptions, run_demo

    opts = DemoOptions(items=items, rpm=rpm, faults="none", time_scale=time_scale, concurrency=20)
    res = run_demo(opts, Console(file=io.StringIO()))
    limit_rate = rpm / (60 * time_scale)  # requests per second the provider allows
    used = res.requests / res.elapsed_s / limit_rate
    result = BenchResult("e2e", f"stepgraph bench e2e --items {items} --rpm {rpm}")
    result.add("wall time", res.elapsed_s, "s", goal="<= 60")
    result.add("throughput", (items - res.failed) / res.elapsed_s, "items/s")
    result.add("provider requests", res.requests, "requests")
    result.add("fraction of the rate limit used", used, "of limit", goal=">= 0.95 when the limit binds")
    result.add("window violations", res.window_violations, "", goal="0")
    result.add("items failed", res.failed, "", goal="0")
    result.notes.append(
        f"document_pipeline (draft, critique, revise; 4 model calls per item), limit {rpm}/min with a minute of "
        f"{60 * time_scale:g} s, the limiter keeps its window 5% longer than the provider's."
    )
    return result


def cli(
    items: int = typer.Option(100, min=1, help="Items in the batch"),
    rpm: int = typer.Option(60, min=1, help="Provider requests per minute"),
) -> None:
    print_result(run(items, rpm))
