"""`stepgraph simulator`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("simulator", help="Not built yet: awaits issue #3.")
    def _cmd() -> None:
        typer.echo("stepgraph simulator is not built yet; it awaits issue #3.", err=True)
        raise typer.Exit(2)
