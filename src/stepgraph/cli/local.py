"""`stepgraph local up`: a local endpoint you can talk to with boto3 or the AWS CLI."""

from __future__ import annotations

import time

import typer


def register(app: typer.Typer) -> None:
    local_app = typer.Typer(
        help="A local stack: moto + the provider simulator, on loopback.", no_args_is_help=True
    )

    @local_app.command("up")
    def up(
        port: int = typer.Option(5000, min=1, max=65535, help="Port of the AWS endpoint"),
        rpm: int = typer.Option(20, min=1, help="Simulated provider requests per minute"),
        rpd: int = typer.Option(1000, min=1, help="Simulated provider requests per UTC day"),
        time_scale: float = typer.Option(
            0.05, min=0.01, max=1.0, help="A minute lasts 60 x this many seconds"
        ),
    ) -> None:
        """Run the stack's resources locally until Ctrl-C; prints the endpoint and the state machine ARN."""
        from stepgraph.local.endpoint import local_endpoint

        with local_endpoint(port=port, rpm=rpm, rpd=rpd, time_scale=time_scale) as ep:
            typer.echo(f"AWS endpoint:   {ep.url}   (region us-east-1, any credentials)")
            typer.echo(f"state machine:  {ep.state_machine_arn}")
            typer.echo(f"data bucket:    {ep.bucket}")
            typer.echo(f"provider:       {ep.simulator_url}")
            typer.echo(
                f"try: stepgraph start {ep.state_machine_arn} --items examples/items/tickets.jsonl "
                f"--bucket {ep.bucket} --endpoint-url {ep.url} --wait"
            )
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                typer.echo("stopping")

    app.add_typer(local_app, name="local")
