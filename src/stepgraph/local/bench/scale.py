"""Benchmark: batches of 100, 1,000 and 5,000 items on the local stack under a loose limit (scale)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from stepgraph.local.bench.report import BenchResult, print_result


def _measure(items: int, concurrency: int, out_dir: str) -> dict[str, Any]:
    """One batch in this process: wall time, `status` time at the end, the run's export directory."""
    from stepgraph.executions import status, status_clients
    from stepgraph.local.demo import DemoOptions, run_demo

    seen: dict[str, Any] = {}

    def after(stack: Any, arn: str, out: Path) -> None:
        clients = status_clients()  # made once, as `status --wait` does
        start = time.perf_counter()
        for _ in range(3):
            report = status(arn, clients=clients)
        seen["status_s"] = (time.perf_counter() - start) / 3
        seen["status_done"] = report.get("items_done")
        seen["export"] = str(out)

    opts = DemoOptions(
        items=items,
        rpm=100_000,
        rpd=10_000_000,
        faults="none",
        concurrency=concurrency,
        out_dir=Path(out_dir),
    )
    run = run_demo(opts, Console(file=io.StringIO()), after=after)
    return {"elapsed_s": run.elapsed_s, "failed": run.failed, "requests": run.requests, **seen}


def _child(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run one measurement alone in a fresh process: its JSON answer and its peak RSS in MB."""
    proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, env=os.environ.copy())
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"bench child {args} failed")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def run(sizes: tuple[int, ...] = (100, 1000, 5000), concurrency: int = 40) -> BenchResult:
    import tempfile

    sizes_arg = " ".join(f"--items {n}" for n in sizes)
    result = BenchResult("scale", f"stepgraph bench scale {sizes_arg} --concurrency {concurrency}")
    per_item: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            batch, rss = _child(["stepgraph.local.bench.scale", "child", str(n), str(concurrency), tmp])
            per_item[n] = batch["elapsed_s"] / n
            first = sizes[0]
            ratio = (
                {} if n == first else {"baseline": per_item[first] * 1000, "baseline_label": f"{first} items"}
            )
            goal = "<= 1.3x" if n == sizes[-1] and n != first else ""
            result.add(f"time per item, {n:,} items", per_item[n] * 1000, "ms", goal=goal, **ratio)  # type: ignore[arg-type]
            result.add(f"peak RSS of the stack process, {n:,} items", rss, "MB")
            result.add(f"status time, {n:,} items", batch["status_s"] * 1000, "ms")
            report, report_rss = _child(["stepgraph.local.bench.lake", "child", "dir-now", batch["export"]])
            # Each size as it ends (a long run cut short keeps what it measured).
            print(
                json.dumps({"items": n, **batch, "rss_mb": rss, "report_rss_mb": report_rss}), file=sys.stderr
            )
            result.add(f"report peak RSS, {n:,} items ({report['records']:,} records)", report_rss, "MB")
            result.add(f"items failed, {n:,} items", batch["failed"], "", goal="0")
            if batch.get("status_done") != n - batch["failed"]:
                result.notes.append(f"{n} items: status counted {batch.get('status_done')} done")
    result.notes.append(
        "document_pipeline (about 5 model calls per item), a limit loose enough never to bind, "
        f"{concurrency} items at once, the simulator in its own process, Distributed Map on moto. Each batch "
        "runs in a fresh process; its peak RSS is the stack's (moto, DynamoDB client, Lambda handlers); the "
        "report runs alone over the batch's exported usage records. Status is the mean of 3 calls at the end with its clients made once (as `status --wait` polls)."
    )
    return result


def cli(
    items: list[int] = typer.Option([100, 1000, 5000], "--items", min=10, help="Batch sizes (repeat)"),
    concurrency: int = typer.Option(40, min=1, help="Items at once"),
) -> None:
    print_result(run(tuple(items), concurrency))


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        n, conc, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
        print(json.dumps(_measure(n, conc, str(Path(out) / f"run-{n}"))))
