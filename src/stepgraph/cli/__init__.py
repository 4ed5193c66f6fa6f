"""The `stepgraph` command. Each subcommand lives in its own module and imports its heavy
dependencies inside the command, so `stepgraph --help` starts fast."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from stepgraph.errors import StepGraphError

app = typer.Typer(
    name="stepgraph",
    help="Run LangGraph graphs over large batches on AWS Step Functions, within provider limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    from stepgraph.cli import bench, demo, local, reviews, simulator, start, status, usage

    for module in (simulator, demo, local, start, status, reviews, usage, bench):
        module.register(app)


_register()


def main() -> None:
    try:
        app()
    except StepGraphError as exc:
        # Typed errors are for people: one line, no traceback.
        # Escaped: a path such as "runs/[old]/" is text, not a rich markup tag.
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True)
        sys.exit(2)
