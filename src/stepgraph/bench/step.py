"""Benchmark: step (not built yet: awaits issue #7)."""

from __future__ import annotations

import typer

from stepgraph.bench.report import BenchResult


def run() -> BenchResult:
    raise NotImplementedError("stepgraph bench step awaits issue #7")


def cli() -> None:
    typer.echo("stepgraph bench step is not built yet; it awaits issue #7.", err=True)
    raise typer.Exit(2)
