"""`stepgraph usage report`: the athena/*.sql queries on DuckDB (local or S3 JSONL) or on Athena."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

PLOT_FORMATS = (".png", ".svg", ".pdf", ".html")


def register(app: typer.Typer) -> None:
    usage_app = typer.Typer(help="Usage records: spend, tokens, 429s, latency.", no_args_is_help=True)

    @usage_app.command("report")
    def report(
        source: str = typer.Option(
            None,
            help="Directory or s3://bucket holding usage/ (or the usage/ prefix itself); not with --athena",
        ),
        query: list[str] = typer.Option(
            None, "--query", "-q", help="Query name (file in athena/queries); all if omitted"
        ),
        since: str = typer.Option(None, help="First UTC day, YYYY-MM-DD"),
        fmt: str = typer.Option(
            "table",
            "--format",
            help='table, json ({"queries": {name: rows}}) or csv (one query, or --out-dir)',
        ),
        out_dir: Path = typer.Option(None, help="With --format csv: write one <query>.csv per query here"),
        plot: Path = typer.Option(
            None, help="Also draw requests and spend per provider over time (.png, .svg, .pdf or .html)"
        ),
        skip_bad_lines: bool = typer.Option(
            False,
            "--skip-bad-lines",
            help="Leave out corrupt usage lines (each is listed) instead of stopping",
        ),
        endpoint_url: str = typer.Option(None, help="S3 endpoint (local stack), e.g. http://127.0.0.1:5000"),
        athena: bool = typer.Option(False, "--athena", help="Run on Athena instead of DuckDB"),
        workgroup: str = typer.Option("stepgraph", help="Athena workgroup"),
        database: str = typer.Option("stepgraph", help="Glue database"),
    ) -> None:
        """Run the usage queries and print their rows."""
        from stepgraph.errors import ConfigError
        from stepgraph.usage.render import render, write_csv_files

        try:
            since_day = datetime.strptime(since, "%Y-%m-%d").date() if since else None
        except ValueError:
            raise ConfigError(f"--since {since!r} is not a date", hint="use YYYY-MM-DD") from None
        if fmt not in ("table", "json", "csv"):
            raise ConfigError(f"--format {fmt!r} is not known", hint="use table, json or csv")
        if out_dir is not None and fmt != "csv":
            raise ConfigError("--out-dir writes CSV files", hint="add --format csv")
        if fmt == "csv" and out_dir is None and len(query or []) != 1:
            raise ConfigError(
                "--format csv prints one query",
                hint="name it with -q NAME, or pass --out-dir DIR for one file each",
            )
        if plot is not None and plot.suffix.lower() not in PLOT_FORMATS:
            raise ConfigError(
                f"--plot {plot}: unknown format {plot.suffix!r}", hint=f"end it in {', '.join(PLOT_FORMATS)}"
            )
        if athena:
            if plot or skip_bad_lines or source:
                raise ConfigError(
                    "--source, --plot and --skip-bad-lines are for DuckDB", hint="drop them with --athena"
                )
            from stepgraph.usage.athena_runner import run_athena

            results = run_athena(
                workgroup=workgroup, database=database, queries=query or None, since=since_day
            )
        else:
            if not source:
                raise ConfigError("--source is required", hint="a directory or s3://bucket; or use --athena")
            results = _duckdb(source, query, since_day, endpoint_url, plot, skip_bad_lines)
        if "cost_by_execution" in results:
            from stepgraph.planning.aws_cost import add_aws_estimates, load_prices

            add_aws_estimates(results["cost_by_execution"], load_prices())
        if out_dir is not None:
            for path in write_csv_files(results, out_dir):
                typer.echo(f"wrote {path}", err=True)
            return
        typer.echo(render(results, fmt))

    @usage_app.command("compact")
    def compact_cmd(
        source: str = typer.Option(..., help="Directory or s3://bucket holding usage/"),
        day: list[str] = typer.Option(None, "--day", help="UTC day YYYY-MM-DD (default: every finished day)"),
        endpoint_url: str = typer.Option(None, help="S3 endpoint (local stack), e.g. http://127.0.0.1:5000"),
    ) -> None:
        """Merge each finished day's usage JSONL into Parquet (never overwrites; safe to run again)."""
        import json as json_mod

        from stepgraph.errors import ConfigError
        from stepgraph.usage.compact import compact
        from stepgraph.usage.lake import DirLake, Lake, S3Lake

        for d in day or []:
            try:
                datetime.strptime(d, "%Y-%m-%d")
            except ValueError:
                raise ConfigError(f"--day {d!r} is not a date", hint="use YYYY-MM-DD") from None
        lake: Lake
        if source.startswith("s3://"):
            import boto3

            bucket, _, rest = source.removeprefix("s3://").partition("/")
            if rest.strip("/") not in ("", "usage"):
                raise ConfigError(
                    f"--source {source}: compaction works on a whole bucket", hint="pass s3://BUCKET"
                )
            lake = S3Lake(bucket, boto3.client("s3", endpoint_url=endpoint_url))
        else:
            root = Path(source)
            root = root.parent if root.name == "usage" else root
            if not (root / "usage").is_dir():
                raise ConfigError(
                    f"--source {source} holds no usage/ folder", hint="pass the folder that holds usage/"
                )
            lake = DirLake(root)
        for summary in compact(lake, days=day or None):
            typer.echo(json_mod.dumps(summary))

    app.add_typer(usage_app, name="usage")


def _duckdb(
    source: str,
    query: list[str] | None,
    since: date | None,
    endpoint_url: str | None,
    plot: Path | None,
    skip_bad_lines: bool,
):  # type: ignore[no-untyped-def]
    from stepgraph.usage.plot import PLOT_SQL, plot_usage
    from stepgraph.usage.report import run_report

    client = None
    if source.startswith("s3://"):
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint_url)
    extra = {"_plot": PLOT_SQL} if plot else None
    skipped: list[str] | None = [] if skip_bad_lines else None
    results = run_report(
        source, queries=query or None, since=since, s3_client=client, extra=extra, skipped=skipped
    )
    for line in (skipped or [])[:20]:
        typer.echo(f"skipped: {line}", err=True)
    if skipped:
        typer.echo(f"skipped {len(skipped)} corrupt usage line(s); the report counts the rest", err=True)
    if plot:
        path = plot_usage(results.pop("_plot"), plot)
        typer.echo(f"wrote {path}", err=True)
    return results
