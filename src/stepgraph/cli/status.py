"""`stepgraph status`: progress of an execution, failures, spend so far."""

from __future__ import annotations

import json
import time
from typing import Any

import typer


def exit_code(report: dict[str, Any]) -> int:
    """0 every item done, 1 the batch ran and an item did not finish, 2 the input was refused."""
    if report.get("rejected_at_validation"):
        return 2
    complete = not report.get("failed_items") and not report.get("unaccounted")
    return 0 if report["status"] == "SUCCEEDED" and complete else 1


def _say_rejected(report: dict[str, Any], *, prefix: str = "error: ") -> None:
    if report.get("rejected_at_validation"):
        typer.echo(
            f"{prefix}rejected at validation: {report['rejected_at_validation']} (fix the input and start again)",
            err=True,
        )


def watch(arn: str, *, endpoint_url: str | None, region: str | None, bucket: str | None = None) -> int:
    from rich.progress import BarColumn, Progress, TextColumn

    from stepgraph.executions import status

    report = status(arn, bucket=bucket, endpoint_url=endpoint_url, region=region)  # errors before the bar
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} items done")
    ) as bar:
        task = bar.add_task("running", total=None)
        while True:
            bar.update(
                task,
                completed=report.get("items_done", 0),
                description=f"{report['status']} — ${report.get('spend_usd', 0):.4f}",
            )
            if report["status"] != "RUNNING":
                break
            time.sleep(2)
            report = status(arn, bucket=bucket, endpoint_url=endpoint_url, region=region)
    typer.echo(json.dumps(report, indent=2, default=str))
    _say_rejected(report)
    return exit_code(report)


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_cmd(
        execution: str = typer.Argument(..., help="Execution ARN"),
        wait: bool = typer.Option(False, "--wait", help="Show progress until the execution ends"),
        items: bool = typer.Option(
            False, "--items", help="Also list each item's state (a Distributed Map's child executions)"
        ),
        bucket: str = typer.Option(None, help="The stack's data bucket (default: found from the execution)"),
        endpoint_url: str = typer.Option(None, help="AWS endpoint (local stack)"),
        region: str = typer.Option(None, help="AWS region"),
    ) -> None:
        """Show an execution's status, items done, failed items and spend so far."""
        from stepgraph.errors import ConfigError
        from stepgraph.executions import item_states, status

        if not execution.startswith("arn:") or ":execution:" not in execution:
            raise ConfigError(
                f"{execution!r} is not an execution ARN",
                hint="arn:aws:states:<region>:<account>:execution:<state machine>:<name>, as start prints it",
            )
        if wait:
            code = watch(execution, bucket=bucket, endpoint_url=endpoint_url, region=region)
            if items:
                rows = item_states(execution, endpoint_url=endpoint_url, region=region)
                typer.echo(json.dumps({"items": rows}, indent=2, default=str))
            raise typer.Exit(code)
        report = status(execution, bucket=bucket, endpoint_url=endpoint_url, region=region)
        if items:
            report["items"] = item_states(execution, endpoint_url=endpoint_url, region=region)
        typer.echo(json.dumps(report, indent=2, default=str))
        _say_rejected(report, prefix="")  # a report of what happened: this command itself went well
