"""Benchmark: usage (not built yet: awaits issue #6)."""

from __future__ import annotations

import typer

from stepgraph.bench.report import BenchResult


def run() -> BenchResult:
    raise NotImplementedError("stepgraph bench usage awaits issue #6")


def cli() -> None:
    typer.echo("stepgraph bench usage is not built yet; it awaits issue #6.", err=True)
    raise typer.Exit(2)
