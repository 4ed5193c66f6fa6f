"""`stepgraph reviews` (list the items waiting for a person, or serve the review page) and `stepgraph resume`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from stepgraph.errors import ConfigError


def open_reviews(execution: str, *, bucket: str | None, endpoint_url: str | None, region: str | None) -> Any:
    from stepgraph import resources
    from stepgraph.clients import client, region_of
    from stepgraph.executions import data_bucket
    from stepgraph.review.answer import Reviews
    from stepgraph.review.store import ReviewStore

    if not execution.startswith("arn:"):
        raise ConfigError(
            f"{execution!r} is not an execution ARN", hint="pass the ARN `stepgraph start` printed"
        )
    region = region or region_of(execution)  # the ARN names it
    sfn = client("stepfunctions", endpoint_url, region)
    # Always asked, --bucket or not: an unknown execution is AWS's one-line ExecutionDoesNotExist, and one
    # that has ended has nothing waiting whatever its records say.
    desc = sfn.describe_execution(executionArn=execution)
    if not bucket:
        out = json.loads(desc.get("output") or "null") or {}
        items_s3 = json.loads(desc.get("input") or "{}").get("items_s3") or {}
        bucket = data_bucket(
            desc,
            out if isinstance(out, dict) else {},
            items_s3,
            sfn=sfn,
            endpoint_url=endpoint_url,
            region=region,
        )
        bucket = bucket or (resources.DATA_BUCKET_NAME if endpoint_url else None)
    if not bucket:
        raise ConfigError(
            "cannot tell the stack's data bucket", hint="pass --bucket (the DataBucketName output)"
        )
    ended = None if desc["status"] == "RUNNING" else str(desc["status"])
    return Reviews(execution, ReviewStore(bucket, client("s3", endpoint_url, region)), sfn, ended=ended)


def parse_value(value: str | None, file: Path | None) -> Any:
    if (value is None) == (file is None):
        raise ConfigError("give the answer with exactly one of --value JSON or --file FILE")
    where = "--value" if value is not None else f"--file {file}"
    try:
        text = value if value is not None else Path(file).read_text()  # type: ignore[arg-type]
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it ({exc.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            hint="""e.g. --value '{"approved": true}' or --value '"yes"'""",
        ) from None


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    from stepgraph.review.answer import waiting_for

    table = Table("item", "round", "node", "payload", "waiting since", "waiting (s)")
    for r in rows:
        waited = waiting_for(r["waiting_since"])
        table.add_row(
            str(r["item_id"]),
            str(r["round"]),
            ", ".join(str(n) for n in r["nodes"]),
            json.dumps(r["payloads"][0] if len(r["payloads"]) == 1 else r["payloads"], default=str)[:200],
            str(r["waiting_since"]),
            f"{waited:.0f}" if waited is not None else "",
            # Payloads are model output: print them as text, never as rich markup.
        )
    Console(markup=False, highlight=False).print(table)


def register(app: typer.Typer) -> None:
    @app.command("reviews")
    def reviews_cmd(
        execution: str = typer.Argument(..., help="Execution ARN"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table"),
        serve: bool = typer.Option(
            False, "--serve", help="Open a local review page (loopback, per-launch token)"
        ),
        port: int = typer.Option(0, help="--serve: port on 127.0.0.1 (0 picks a free one)"),
        bucket: str = typer.Option(None, help="The stack's data bucket (default: found from the execution)"),
        endpoint_url: str = typer.Option(None, help="AWS endpoint (local stack)"),
        region: str = typer.Option(None, help="AWS region"),
    ) -> None:
        """List the items waiting for a review: item, node, payload, waiting since."""
        rv = open_reviews(execution, bucket=bucket, endpoint_url=endpoint_url, region=region)
        if serve:
            from stepgraph.review.page import serve_forever

            serve_forever(rv, port=port)
            return
        rows = rv.pending()
        if as_json:
            typer.echo(json.dumps(rows, indent=2, default=str))
        elif not rows:
            ended = f" (the execution has ended: {rv.ended})" if rv.ended else ""
            typer.echo(f"no items waiting for a review{ended}")
        else:
            print_table(rows)

    @app.command("resume")
    def resume_cmd(
        execution: str = typer.Argument(..., help="Execution ARN"),
        item: str = typer.Argument(None, help="Item id (see `stepgraph reviews`); omit with --all"),
        value: str = typer.Option(None, "--value", help="The answer, as JSON"),
        file: Path = typer.Option(None, "--file", help="A file holding the answer as JSON"),
        all_items: bool = typer.Option(False, "--all", help="Answer every waiting item with the same value"),
        bucket: str = typer.Option(None, help="The stack's data bucket (default: found from the execution)"),
        endpoint_url: str = typer.Option(None, help="AWS endpoint (local stack)"),
        region: str = typer.Option(None, help="AWS region"),
    ) -> None:
        """Answer a review: the item resumes with the value as the interrupt's result."""
        answer = parse_value(value, file)
        if all_items == (item is not None):
            raise ConfigError("name one ITEM or pass --all")
        rv = open_reviews(execution, bucket=bucket, endpoint_url=endpoint_url, region=region)
        if all_items:
            rv.check_running()  # one item is checked by its record first (answered, unknown, ...)
        items = [str(r["item_id"]) for r in rv.pending()] if all_items else [item]
        if all_items and not items:
            raise ConfigError("no items are waiting for a review in this execution")
        for item_id in items:
            rv.answer(item_id, answer)
            typer.echo(f"item {item_id}: answered, it resumes now")
