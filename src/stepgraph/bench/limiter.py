"""Benchmark: limiter (not built yet: awaits issue #4)."""

from __future__ import annotations

import typer

from stepgraph.bench.report import BenchResult


def run() -> BenchResult:
    raise NotImplementedError("stepgraph bench limiter awaits issue #4")


def cli() -> None:
    typer.echo("stepgraph bench limiter is not built yet; it awaits issue #4.", err=True)
    raise typer.Exit(2)
