"""`stepgraph status`: progress of an execution, failures, spend so far."""

from __future__ import annotations

import json
import time
from typing import Any

import typer


def watch(arn: str, *, failures: int = 50, **where: Any) -> int:
    from rich.progress import BarColumn, Progress, TextColumn

    from stepgraph.executions import status, status_clients

    where["clients"] = status_clients(endpoint_url=where.get("endpoint_url"), region=where.get("region"))
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} items done")
    ) as bar:
        task = bar.add_task("running", total=None)
        while True:
            # Between polls only the cheap parts: no failure record is downloaded.
            report = status(arn, failures_limit=0, **where)
            bar.update(
                task,
                completed=report.get("items_done", 0),
                total=(report.get("map_run") or {}).get("total"),
                description=f"{report['status']} — ${report.get('spend_usd', 0):.4f}",
            )
            if report["status"] != "RUNNING":
                break
            time.sleep(2)
    report = status(arn, failures_limit=failures, **where)
    typer.echo(json.dumps(report, indent=2, default=str))
    complete = not report.get("failed_items") and not report.get("unaccounted")
    return 0 if report["status"] == "SUCCEEDED" and complete else 1


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_cmd(
        execution: str = typer.Argument(..., help="Execution ARN"),
        wait: bool = typer.Option(False, "--wait", help="Show progress until the execution ends"),
        bucket: str = typer.Option(
            None, help="The stack's data bucket (default: the bucket the items were read from)"
        ),
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
        from stepgraph.executions import status

        where: dict[str, Any] = {
            "bucket": bucket,
            "table": table,
            "endpoint_url": endpoint_url,
            "region": region,
        }
        if wait:
            raise typer.Exit(watch(execution, failures=failures, **where))
        report = status(execution, failures_limit=failures, **where)
        typer.echo(json.dumps(report, indent=2, default=str))
