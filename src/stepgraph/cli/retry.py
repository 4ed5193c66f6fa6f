"""`stepgraph retry`: a new execution for an ended run's failed or unaccounted items, resuming their threads."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("retry")
    def retry(
        execution: str = typer.Argument(..., help="The ended execution's ARN"),
        failed: bool = typer.Option(False, "--failed", help="Retry the items that failed"),
        unaccounted: bool = typer.Option(
            False, "--unaccounted", help="Retry the items with neither a result nor a failure record"
        ),
        items: str = typer.Option(None, "--items", help="Retry these item ids, e.g. 3,7,12"),
        config: str = typer.Option(
            None,
            help='Change the run config for the retry, e.g. {"budget_usd": 5} (merged into the original)',
        ),
        name: str = typer.Option(None, help="Execution name (default: <original>-retry-<random>)"),
        bucket: str = typer.Option(None, help="The stack's data bucket (default: found from the execution)"),
        wait: bool = typer.Option(False, "--wait", help="Show progress until the retry ends"),
        endpoint_url: str = typer.Option(None, help="AWS endpoint (local stack)"),
        region: str = typer.Option(None, help="AWS region"),
    ) -> None:
        """Start a new execution for the failed and unaccounted items (default: both), each continuing
        its own thread at the node that failed. Prints the new ARN; nothing to retry starts nothing."""
        from stepgraph.clients import client, region_of
        from stepgraph.errors import ConfigError
        from stepgraph.executions import NAME_RE
        from stepgraph.retries import parse_item_ids, plan_retry, start_retry

        if not execution.startswith("arn:") or ":execution:" not in execution:
            raise ConfigError(
                f"{execution!r} is not an execution ARN",
                hint="arn:aws:states:<region>:<account>:execution:<state machine>:<name>, as start prints it",
            )
        if name is not None and not NAME_RE.match(name):
            raise ConfigError(
                f"--name {name!r} is not a valid execution name", hint="1-80 letters, digits, - or _"
            )
        ids = parse_item_ids(items) if items is not None else None
        try:
            overrides = json.loads(config) if config else None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config is not JSON ({exc.msg})", hint='e.g. {"budget_usd": 5}') from None
        if overrides is not None and not isinstance(overrides, dict):
            raise ConfigError("--config must be a JSON object", hint='e.g. {"budget_usd": 5}')
        where = region or region_of(execution)  # the ARN names its region
        sfn, s3 = client("stepfunctions", endpoint_url, where), client("s3", endpoint_url, where)
        plan = plan_retry(
            execution,
            sfn=sfn,
            s3=s3,
            failed=failed,
            unaccounted=unaccounted,
            items=ids,
            bucket=bucket,
            config=overrides,
            endpoint_url=endpoint_url,
            region=where,
        )
        if not plan.item_ids:
            typer.echo("nothing to retry: no item of that execution failed or went unaccounted", err=True)
            return
        arn = start_retry(plan, sfn=sfn, s3=s3, name=name)
        typer.echo(arn)
        typer.echo(f"retrying {len(plan.item_ids)} item(s): {', '.join(plan.item_ids)}", err=True)
        if wait:
            from stepgraph.cli.status import watch

            raise typer.Exit(watch(arn, endpoint_url=endpoint_url, region=where, bucket=plan.bucket))
