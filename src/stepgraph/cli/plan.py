"""`stepgraph plan`: forecast a batch before it runs (placeholder until the forecast lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
