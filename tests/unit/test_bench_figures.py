"""The helpers the scale and lake benchmarks compute their figures with (no stack, no timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from stepgraph.local.bench.lake import parse_size
from stepgraph.local.bench.scale import steady_per_item


def test_steady_per_item_leaves_out_ramp_up_and_tail() -> None:
    # 10 s of ramp-up, then one item a second, then a 30 s tail on the last item.
    done = [10.0 + i for i in range(99)] + [10.0 + 98 + 30]
    assert steady_per_item(done) == pytest.approx(1.0)
    assert steady_per_item(done, 0.0, 1.0) == pytest.approx((done[-1] - done[0]) / 99)


def test_steady_per_item_shows_growth_within_a_batch() -> None:
    # The second half twice as slow per item as the first.
    done = [float(i) for i in range(50)] + [49.0 + 2 * (i + 1) for i in range(50)]
    assert steady_per_item(done, 0.5, 0.9) / steady_per_item(done, 0.1, 0.5) == pytest.approx(2.0, rel=0.1)


@given(st.lists(st.floats(0, 1e6), min_size=10, max_size=200))
def test_steady_per_item_is_order_free_and_not_negative(done: list[float]) -> None:
    assert steady_per_item(done) == steady_per_item(list(reversed(done))) >= 0


def test_steady_per_item_refuses_too_few_items() -> None:
    with pytest.raises(ValueError, match="at least 2 items"):
        steady_per_item([1.0])


def test_parse_size() -> None:
    assert parse_size("100000:10000") == (100_000, 10_000)
    for bad in ("100000", "a:b", "10:100", "10:0"):
        with pytest.raises(typer.BadParameter, match="RECORDS:FILES"):
            parse_size(bad)


def test_progress_log_reads_the_live_table_at_most_every_period() -> None:
    import io

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from stepgraph.local.bench.scale import ProgressLog

    now = [0.0]
    out = io.StringIO()
    log = ProgressLog(every_s=30, out=out, clock=lambda: now[0])
    console = Console(file=log, force_terminal=True, color_system=None, width=120)

    def table(done: int) -> Table:
        t = Table(title="stepgraph demo", show_header=False)
        t.add_row("items done", f"{done} / 5000")
        t.add_row("elapsed", f"{now[0]:.1f} s")
        return t

    with Live(table(0), console=console, auto_refresh=False) as live:
        for step in range(1, 8):
            now[0] = step * 10.0
            live.update(table(step * 7), refresh=True)
    assert [(x["progress_s"], x["done"], x["of"]) for x in log.lines] == [
        (0.0, 0, 5000),  # the table as Live starts
        (30.0, 21, 5000),
        (60.0, 42, 5000),
    ]
    assert out.getvalue().count("\n") == 3 and all(x["rss_mb"] >= 0 for x in log.lines)


def test_a_partial_bench_run_replaces_its_sections_and_keeps_the_others() -> None:
    from stepgraph.local.bench.report import BenchResult, sections_of, to_markdown

    def result(name: str, value: float) -> BenchResult:
        r = BenchResult(name, f"stepgraph bench {name}")
        r.add("wall time", value, "s")
        return r

    order = ("limiter", "e2e", "pool")
    earlier = to_markdown([result("limiter", 1.0), result("e2e", 2.0)], order)
    again = to_markdown([result("pool", 3.0), result("e2e", 4.0)], order, keep=earlier)
    sections = sections_of(again)
    assert list(sections) == ["limiter", "e2e", "pool"]
    assert sections["limiter"] == sections_of(earlier)["limiter"]  # not re-run: kept as it was
    assert "| wall time | 4.00 | s |" in "\n".join(sections["e2e"]) and "2.00" not in "\n".join(
        sections["e2e"]
    )
    assert all(any(line.startswith("Measured ") for line in lines) for lines in sections.values())


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux /proc")
def test_the_lambda_peak_is_the_largest_forkserver_worker_below_this_process() -> None:
    import multiprocessing

    from stepgraph.local.bench.scale import lambda_peak_mb

    ctx = multiprocessing.get_context("forkserver")
    ready, stop = ctx.Event(), ctx.Event()
    worker = ctx.Process(target=_hold_memory, args=(320, ready, stop))
    worker.start()
    try:
        assert ready.wait(30)
        # 320 MB: above any stack worker that an earlier test of this process may have left running.
        assert lambda_peak_mb() >= 320
    finally:
        stop.set()
        worker.join(30)


def _hold_memory(mb: int, ready: Any, stop: Any) -> None:
    held = bytearray(mb * 2**20)
    for i in range(0, len(held), 4096):  # touch every page, so it is resident
        held[i] = 1
    ready.set()
    stop.wait(30)
