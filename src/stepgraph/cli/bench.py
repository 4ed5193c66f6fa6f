"""`stepgraph bench ...`: each benchmark lives in `stepgraph.local.bench.<name>` and exposes `cli`
(a typer command function) and `run(...) -> BenchResult`. `bench all` runs every one and
writes docs/benchmarks.md."""

from __future__ import annotations

import typer

BENCHES = ("limiter", "checkpoint", "usage", "lake", "step", "layer", "e2e", "scale")


def register(app: typer.Typer) -> None:
    import importlib

    bench_app = typer.Typer(
        help="Benchmarks: each prints its figures beside a baseline.", no_args_is_help=True
    )
    for name in BENCHES:
        module = importlib.import_module(f"stepgraph.local.bench.{name}")
        bench_app.command(name, help=(module.__doc__ or "").strip().splitlines()[0])(module.cli)
    from stepgraph.local.bench import report

    bench_app.command("all", help="Run every benchmark and write docs/benchmarks.md.")(report.cli_all)
    app.add_typer(bench_app, name="bench")
