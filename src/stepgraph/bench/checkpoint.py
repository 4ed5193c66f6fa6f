"""Benchmark: checkpoint (not built yet: awaits issue #5)."""

from __future__ import annotations

import typer

from stepgraph.bench.report import BenchResult


def run() -> BenchResult:
    raise NotImplementedError("stepgraph bench checkpoint awaits issue #5")


def cli() -> None:
    typer.echo("stepgraph bench checkpoint is not built yet; it awaits issue #5.", err=True)
    raise typer.Exit(2)
