"""`stepgraph demo`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo", help="Not built yet: awaits issue #9.")
    def _cmd() -> None:
        typer.echo("stepgraph demo is not built yet; it awaits issue #9.", err=True)
        raise typer.Exit(2)
