"""`stepgraph demo`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        items: int = typer.Option(
            None,
            min=1,
            max=2000,
            help="How many items, the file cycled [default: 40, or exactly the --items-file's items]",
        ),
        graph: str = typer.Option(
            "document_pipeline",
            help="Registered graph: document_pipeline, fanout, triage_with_review or support_agent",
        ),
        concurrency: int = typer.Option(10, min=1, max=1000, help="Map concurrency"),
        rpm: int = typer.Option(20, min=1, help="Provider requests per minute (simulator and limiter)"),
        rpd: int = typer.Option(1000, min=1, help="Provider requests per UTC day"),
        faults: str = typer.Option("mixed", help="none, or mixed (5% of requests fail with 502/503)"),
        time_scale: float = typer.Option(
            0.05, min=0.01, max=1.0, help="A minute lasts 60 x this many seconds"
        ),
        items_file: Path = typer.Option(None, help="JSONL items (default: examples/items/tickets.jsonl)"),
        out: Path = typer.Option(Path(".stepgraph/demo"), help="Where results and usage records are copied"),
        pool: bool = typer.Option(
            False,
            "--pool",
            help="Run over a pool of four simulated free providers (openrouter, groq, cerebras, nvidia) with "
            "different limits, with a live view per provider (--rpm/--rpd do not apply)",
        ),
        auto_review: str = typer.Option(
            None, help="approve or reject: answer human reviews as they appear (graph triage_with_review)"
        ),
    ) -> None:
        """Run a real batch through the real state machine definition, locally (no AWS account, no key)."""
        from stepgraph.local.demo import DemoOptions, run_demo

        count = items if items is not None or items_file else 40
        opts = DemoOptions(
            count, graph, concurrency, rpm, rpd, faults, time_scale, out_dir=out, auto_review=auto_review
        )
        if items_file:
            opts.items_file = items_file
        opts.pool = pool
        result = run_demo(opts)
        raise typer.Exit(1 if result.failed else 0)
