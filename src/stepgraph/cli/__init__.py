"""The `stepgraph` command. Each subcommand lives in its own module and imports its heavy
dependencies inside the command, so `stepgraph --help` starts fast."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="stepgraph",
    help="Run LangGraph graphs over large batches on AWS Step Functions, within provider limits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an error (also after the subcommand)"
    ),
) -> None:
    """Run LangGraph graphs over large batches on AWS Step Functions, within provider limits."""


def _register() -> None:
    from stepgraph.cli import bench, demo, local, plan, retry, reviews, simulator, start, status, usage

    for module in (simulator, demo, local, start, status, retry, plan, reviews, usage, bench):
        module.register(app)


_register()


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` and return its exit code; every error ends here (see boundary)."""
    from typer._click import exceptions as click_exc  # typer ships its own click

    from stepgraph.cli.boundary import INTERNAL_ERROR, USER_ERROR, user_message

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("STEPGRAPH_DEBUG", "") not in ("", "0", "false")
    args = [a for a in args if a != "--debug"]
    err = Console(stderr=True, soft_wrap=True)  # soft wrap: one line stays one line at any width
    try:
        code = app(args=args, prog_name="stepgraph", standalone_mode=False)
        return int(code or 0)
    except click_exc.NoArgsIsHelpError:
        return USER_ERROR  # click printed the help already
    except typer.Abort:
        return 130
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        if debug:
            err.print_exception()
        message = user_message(exc)
        if message is None:
            where = "" if debug else "; run again with --debug for the traceback"
            err.print(
                f"[red]error:[/red] unexpected {type(exc).__name__}: {escape(' '.join(str(exc).split()))} "
                f"(a bug in stepgraph{where})",
                highlight=False,
            )
            return INTERNAL_ERROR
        # Escaped: a path such as "runs/[old]/" is text, not a rich markup tag.
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
        return USER_ERROR


def main() -> None:
    sys.exit(run())
