"""`stepgraph start`: start an execution on AWS or a local endpoint."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    @app.command("start")
    def start(
        state_machine: str = typer.Argument(..., help="State machine ARN, or the CloudFormation stack name"),
        items: str = typer.Option(
            ..., help="JSONL file (uploaded as a JSON array) or s3://bucket/key of a JSON array"
        ),
        graph: str = typer.Option("document_pipeline", help="Registered graph name"),
        bucket: str = typer.Option(
            None, help="Data bucket to upload a local JSONL file to (the stack's DataBucketName)"
        ),
        config: str = typer.Option(None, help='Run config as JSON, e.g. {"max_concurrency": 20}'),
        name: str = typer.Option(None, help="Execution name (default: run-<random>); a used name is refused"),
        force_new_name: bool = typer.Option(
            False, "--force-new-name", help="When --name is taken, use it with a random suffix instead"
        ),
        wait: bool = typer.Option(False, "--wait", help="Show progress until the execution ends"),
        endpoint_url: str = typer.Option(
            None, help="AWS endpoint (e.g. the one `stepgraph local up` prints)"
        ),
        region: str = typer.Option(None, help="AWS region"),
    ) -> None:
        """Start a batch: upload the items, start the execution, print its ARN."""
        from stepgraph.errors import ConfigError
        from stepgraph.executions import start as start_execution

        try:
            cfg = json.loads(config) if config else None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--config is not JSON ({exc.msg})", hint='e.g. {"max_concurrency": 20}'
            ) from None
        if cfg is not None and not isinstance(cfg, dict):
            raise ConfigError("--config must be a JSON object", hint='e.g. {"max_concurrency": 20}')
        arn = start_execution(
            state_machine,
            graph=graph,
            items=items,
            bucket=bucket,
            config=cfg,
            name=name,
            force_new_name=force_new_name,
            endpoint_url=endpoint_url,
            region=region,
        )
        typer.echo(arn)
        if wait:
            from stepgraph.cli.status import watch

            raise typer.Exit(watch(arn, endpoint_url=endpoint_url, region=region, bucket=bucket))
