"""Benchmark: e2e (not built yet: awaits issue #9)."""

from __future__ import annotations

import typer

from stepgraph.bench.report import BenchResult


def run() -> BenchResult:
    raise NotImplementedError("stepgraph bench e2e awaits issue #9")


def cli() -> None:
    typer.echo("stepgraph bench e2e is not built yet; it awaits issue #9.", err=True)
    raise typer.Exit(2)
