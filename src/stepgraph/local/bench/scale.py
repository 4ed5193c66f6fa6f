"""Benchmark: batches of 100, 1,000 and 5,000 items on the local stack under a loose limit (scale)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from stepgraph.local.bench.report import BenchResult, print_result


def steady_per_item(done_at: list[float], lo: float = 0.1, hi: float = 0.9) -> float:
    """Seconds per item between the `lo` and `hi` fractions of the batch, by completion times.

    Leaves out the ramp-up (the first items wait for the Map to fill) and the tail (the last ones run
    with fewer at once), which dominate a small batch's wall time and are the same whatever its size."""
    times = sorted(done_at)
    a, b = int(lo * (len(times) - 1)), int(hi * (len(times) - 1))
    if b <= a:
        raise ValueError(
            f"need at least 2 items between {lo:.0%} and {hi:.0%} of the batch, got {len(times)}"
        )
    return (times[b] - times[a]) / (b - a)


def _stored(stack: Any) -> tuple[int, int]:
    """Objects and bytes the S3 stand-in holds (moto keeps them in the stack's own memory)."""
    s3 = stack.client("s3")
    sizes = [
        obj["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
        for obj in page.get("Contents", [])
    ]
    return len(sizes), sum(sizes)


def _done_at(stack: Any, run: str) -> list[float]:
    """When each result object was created (its LastModified; moto keeps whole seconds)."""
    from stepgraph import resources

    s3 = stack.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.bucket, Prefix=f"{resources.PREFIX_RESULTS}{run}/"
    )
    return [obj["LastModified"].timestamp() for page in pages for obj in page.get("Contents", [])]


class ProgressLog(io.StringIO):
    """Where the demo's live table goes: every `every_s` it writes the items done so far, the time and
    this process's RSS to stderr, so a batch cut short still shows how its time per item went."""

    _DONE = re.compile(r"items done\D+(\d+) / (\d+)")

    def __init__(self, every_s: float = 30.0, out: Any = None, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.out, self.clock = every_s, out or sys.stderr, clock
        self.started = clock()
        self.last = -every_s
        self.lines: list[dict[str, Any]] = []

    def write(self, text: str) -> int:
        now = self.clock() - self.started
        found = self._DONE.findall(text)
        if found and now - self.last >= self.every_s:
            self.last = now
            done, total = map(int, found[-1])
            line = {"progress_s": round(now, 1), "done": done, "of": total, "rss_mb": _rss_mb()}
            self.lines.append(line)
            print(json.dumps(line), file=self.out, flush=True)
        return len(text)


def _rss_mb() -> int:
    """This process's resident memory now (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20


def _descendants(pid: int) -> list[int]:
    """Every live process under `pid` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def lambda_peak_mb(pid: int | None = None) -> int:
    """The largest peak RSS (VmHWM) of the stack's Lambda worker processes (forked from its forkserver)."""
    peak = 0
    for child in _descendants(pid or os.getpid()):
        proc = Path("/proc") / str(child)
        try:
            if b"multiprocessing.forkserver" not in (proc / "cmdline").read_bytes():
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) // 1024)
    return peak


def _measure(items: int, concurrency: int, out_dir: str) -> dict[str, Any]:
    """One batch in this process: wall time, `status` time at the end, the run's export directory."""
    from stepgraph.local.demo import DemoOptions, run_demo
    from stepgraph.run_status import status

    seen: dict[str, Any] = {}

    def after(stack: Any, arn: str, out: Path) -> None:
        # The stack's clients (its endpoint, region and credentials), made once as `status --wait` does.
        clients = {name: stack.client(name) for name in ("stepfunctions", "s3", "dynamodb")}
        start = time.perf_counter()
        for _ in range(3):
            report = status(arn, clients=clients)
        seen["status_s"] = (time.perf_counter() - start) / 3
        seen["status_done"] = report.get("items_done")
        seen["export"] = str(out)
        seen["lambda_peak_mb"] = lambda_peak_mb()  # the workers are still up: the stack is
        seen["objects"], seen["stored_bytes"] = _stored(stack)
        done_at = _done_at(stack, arn.rsplit(":", 1)[-1])
        seen["steady_s"] = steady_per_item(done_at)
        # Within the batch: the second half of the steady part against the first (growth as the bucket fills).
        seen["late_over_early"] = steady_per_item(done_at, 0.5, 0.9) / steady_per_item(done_at, 0.1, 0.5)

    opts = DemoOptions(
        items=items,
        rpm=100_000,
        rpd=10_000_000,
        faults="none",
        concurrency=concurrency,
        out_dir=Path(out_dir),
    )
    # A terminal console, so the live table renders on each refresh and ProgressLog sees it.
    console = Console(file=ProgressLog(), force_terminal=True, color_system=None, width=160)
    run = run_demo(opts, console, after=after)
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
    steady: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            batch, rss = _child(["stepgraph.local.bench.scale", "child", str(n), str(concurrency), tmp])
            per_item[n] = batch["elapsed_s"] / n
            steady[n] = batch["steady_s"]
            first = sizes[0]
            goal = "<= 1.3x" if n == sizes[-1] and n != first else ""
            for label, seen in (("wall time", per_item), ("steady, 10-90 % of items", steady)):
                ratio = (
                    {} if n == first else {"baseline": seen[first] * 1000, "baseline_label": f"{first} items"}
                )
                result.add(f"time per item ({label}), {n:,} items", seen[n] * 1000, "ms", goal=goal, **ratio)  # type: ignore[arg-type]
            result.add(
                f"time per item, items 50-90 % over 10-50 %, {n:,} items", batch["late_over_early"], "x",
                goal="~1 (flat within the batch)",
            )  # fmt: skip
            result.add(f"peak RSS of the stack process (moto and its stored state), {n:,} items", rss, "MB")
            result.add(f"peak RSS of a Lambda worker process, {n:,} items", batch["lambda_peak_mb"], "MB")
            result.add(
                f"S3 stand-in contents held in that process, {n:,} items ({batch['objects']:,} objects)",
                batch["stored_bytes"] / 1e6, "MB",
            )  # fmt: skip
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
        "runs in a fresh process; its peak RSS is the stack's (moto holding every stored object and execution, the "
        "S3 stand-in's index); each Lambda runs in worker processes of its own, their largest peak beside it; the "
        "report runs alone over the batch's exported usage records. Status is the mean of 3 calls at the end with "
        "its clients made once (as `status --wait` polls). Steady time per item: between the 10th and 90th "
        "percentile of the result objects' creation times (whole seconds in moto), so ramp-up and tail, the "
        "same for every size, do not count."
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
