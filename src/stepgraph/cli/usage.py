"""`stepgraph usage`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("usage", help="Not built yet: awaits issue #6.")
    def _cmd() -> None:
        typer.echo("stepgraph usage is not built yet; it awaits issue #6.", err=True)
        raise typer.Exit(2)
