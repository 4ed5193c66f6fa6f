"""`stepgraph status`: progress of an execution, failures, spend so far."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import typer

from stepgraph import resources

ENV_DYNAMODB_ENDPOINT = "STEPGRAPH_DYNAMODB_ENDPOINT_URL"


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


def watch(arn: str, *, failures: int = 50, **where: Any) -> int:
    from rich.progress import BarColumn, Progress, TextColumn

    from stepgraph.run_status import status, status_clients

    where["clients"] = status_clients(
        endpoint_url=where.get("endpoint_url"),
        region=where.get("region"),
        dynamodb_endpoint_url=where.get("dynamodb_endpoint_url"),
    )
    # Between polls only the cheap parts: no failure record is downloaded.
    report = status(arn, failures_limit=0, **where)  # errors before the bar
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} items done")
    ) as bar:
        task = bar.add_task("running", total=None)
        while True:
            bar.update(
                task,
                completed=report.get("items_done", 0),
                total=(report.get("map_run") or {}).get("total"),
                description=f"{report['status']} — ${report.get('spend_usd', 0):.4f}",
            )
            if report["status"] != "RUNNING":
                break
            time.sleep(2)
            report = status(arn, failures_limit=0, **where)
    report = status(arn, failures_limit=failures, **where)
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
        table: str = typer.Option(
            None,
            help="The limiter table holding the run counters (the stack's LimiterTableName output; "
            "default $STEPGRAPH_LIMITER_TABLE)",
        ),
        failures: int = typer.Option(50, help="List at most this many failed items"),
        endpoint_url: str = typer.Option(None, help="AWS endpoint (local stack)"),
        region: str = typer.Option(None, help="AWS region"),
    ) -> None:
        """Show an execution's status, items done, failed items and spend so far."""
        from stepgraph.clients import region_of
        from stepgraph.errors import ConfigError
        from stepgraph.run_status import item_states, status

        if not execution.startswith("arn:") or ":execution:" not in execution:
            raise ConfigError(
                f"{execution!r} is not an execution ARN",
                hint="arn:aws:states:<region>:<account>:execution:<state machine>:<name>, as start prints it",
            )
        where: dict[str, Any] = {
            "bucket": bucket,
            # The command's edge reads the environment; the library takes plain arguments.
            "table": table or os.environ.get(resources.ENV_LIMITER_TABLE),
            "endpoint_url": endpoint_url,
            "dynamodb_endpoint_url": os.environ.get(ENV_DYNAMODB_ENDPOINT),
            "region": region or region_of(execution),  # the ARN names it
        }
        if wait:
            code = watch(execution, failures=failures, **where)
            if items:
                rows = item_states(execution, endpoint_url=endpoint_url, region=region)
                typer.echo(json.dumps({"items": rows}, indent=2, default=str))
            raise typer.Exit(code)
        report = status(execution, failures_limit=failures, **where)
        if items:
            report["items"] = item_states(execution, endpoint_url=endpoint_url, region=region)
        typer.echo(json.dumps(report, indent=2, default=str))
        _say_rejected(report, prefix="")  # a report of what happened: this command itself went well
