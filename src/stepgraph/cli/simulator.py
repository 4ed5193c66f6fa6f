"""`stepgraph simulator`: a local OpenRouter-compatible provider."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("simulator")
    def simulator(
        host: str = typer.Option("127.0.0.1", help="Interface to bind (keep it on loopback)"),
        port: int = typer.Option(8787, min=1, max=65535, help="Port"),
        rpm: int = typer.Option(20, min=1, help="Requests per sliding minute, per account"),
        rpd: int = typer.Option(1000, min=1, help="Requests per UTC day, per account"),
        max_concurrency: int | None = typer.Option(None, min=1, help="Concurrent requests per account"),
        credits: float = typer.Option(10.0, min=0, help="Credits (USD) of each account for paid models"),
        accounts: Path | None = typer.Option(None, help="Accounts file (YAML/JSON): keys, credits, limits"),
        fail_rate: float = typer.Option(0.0, min=0, max=1, help="Share of admitted requests failing 502/503"),
        latency_ms: float = typer.Option(0.0, min=0, help="Added latency per request"),
        jitter_ms: float = typer.Option(0.0, min=0, help="Random +/- latency"),
        stream_error_rate: float = typer.Option(
            0.0, min=0, max=1, help="Share of streams ending in an error"
        ),
        time_scale: float | None = typer.Option(
            None,
            min=0.001,
            max=1.0,
            help="Scale the rate window (0.05: a minute lasts 3 s) [env STEPGRAPH_TIME_SCALE]",
        ),
        seed: int = typer.Option(0, help="Seed of the fault dice"),
        limit_paid: bool = typer.Option(
            False, help="Apply the limits to paid models too (OpenRouter limits only :free variants)"
        ),
    ) -> None:
        """Run a local OpenRouter-compatible provider (limits, 429s, usage, cost, faults)."""
        from stepgraph.config import load_settings
        from stepgraph.local.ports import ensure_free
        from stepgraph.local.simulator import DEV_KEY, serve_forever
        from stepgraph.local.simulator.accounts import load_accounts_file

        ensure_free(port, host=host)

        scale = load_settings(time_scale=time_scale).time_scale
        spec = load_accounts_file(accounts) if accounts else None
        typer.echo(f"OpenRouter-compatible base URL: http://{host}:{port}/api/v1  (Ollama-style: /v1)")
        if spec is None:
            typer.echo(f"API key: {DEV_KEY} (a local placeholder)")
        typer.echo(
            f"limits per account: {rpm}/min (window {60 * scale:g} s), {rpd}/day"
            f" on {'every model' if limit_paid else 'free models'}; stats at /_sim/stats"
        )
        serve_forever(
            host=host,
            port=port,
            rpm=rpm,
            rpd=rpd,
            max_concurrency=max_concurrency,
            credits_usd=credits,
            accounts=spec,
            fail_rate=fail_rate,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            stream_error_rate=stream_error_rate,
            time_scale=scale,
            seed=seed,
            limit_paid=limit_paid,
        )
