"""`stepgraph plan`: before a batch runs, how many requests and tokens, which UTC days, how long (free models
only, and with the paid fallback), what the paid fallback and AWS would charge."""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

import typer

TOKENS_RE = re.compile(r"^(\d+)(?:\+(\d+))?$")
PROMPT_SHARE = 0.75  # --tokens-per-call N alone: three quarters prompt, a quarter completion


def parse_tokens(text: str) -> tuple[float, float]:
    """`1200` (split 3:1 prompt:completion) or `900+300` (prompt+completion)."""
    from stepgraph.errors import ConfigError

    m = TOKENS_RE.match(text.strip())
    if not m or int(m.group(1)) + int(m.group(2) or 0) <= 0:
        raise ConfigError(
            f"--tokens-per-call {text!r} is not a token count",
            hint="a whole number (e.g. 1200) or prompt+completion (e.g. 900+300)",
        )
    if m.group(2) is None:
        total = int(m.group(1))
        return total * PROMPT_SHARE, total * (1 - PROMPT_SHARE)
    return float(m.group(1)), float(m.group(2))


def _items(spec: str, endpoint_url: str | None, region: str | None) -> list[Any]:
    from pathlib import Path

    from stepgraph.clients import client
    from stepgraph.errors import ConfigError
    from stepgraph.executions import read_items

    if spec.startswith("s3://"):
        bucket, _, key = spec.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise ConfigError(f"--items {spec!r} names no object", hint="s3://bucket/key of a JSON array")
        body = client("s3", endpoint_url, region).get_object(Bucket=bucket, Key=key)["Body"].read()
        rows = json.loads(body)
        if not isinstance(rows, list):
            raise ConfigError(f"--items {spec}: not a JSON array", hint="`stepgraph start` writes one")
    else:
        rows = read_items(Path(spec))
    if not rows:
        raise ConfigError(f"--items {spec}: the file holds no items", hint="one JSON value per line")
    return rows


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        items: str = typer.Option(..., help="JSONL file or s3://bucket/key of a JSON array"),
        graph: str = typer.Option("document_pipeline", help="Registered graph name"),
        config: str = typer.Option(None, help='Run config as JSON, e.g. {"max_concurrency": 20}'),
        sample: int = typer.Option(3, min=1, max=50, help="Items run through the local stack to measure"),
        calls_per_item: float = typer.Option(None, min=0.01, help="Skip the sample: model calls per item"),
        tokens_per_call: str = typer.Option(
            None, help="With --calls-per-item: tokens per call, N or prompt+completion (e.g. 900+300)"
        ),
        item_s: float = typer.Option(None, min=0.01, help="Seconds one item takes with no limit in the way"),
        prices: str = typer.Option(None, help="AWS price table (default: the packaged data/prices/aws.json)"),
        start: str = typer.Option(None, help="When the batch starts, ISO-8601 UTC (default: now)"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        live: bool = typer.Option(
            False,
            "--live",
            help="Count today's spent quota and the limits learned from the providers (the stack's limiter table)",
        ),
        endpoint_url: str = typer.Option(
            None, help="AWS endpoint, to read s3:// items and the limiter table"
        ),
        region: str = typer.Option(None, help="AWS region"),
    ) -> None:
        """Forecast a batch from the provider pool's limits and the UTC day windows."""
        from stepgraph.errors import ConfigError
        from stepgraph.graphs.registry import registered
        from stepgraph.planning.aws_cost import load_prices
        from stepgraph.providers.table import load_provider_table
        from stepgraph.runtime.validate import check_run_config
        from stepgraph.schemas import RunConfig

        if fmt not in ("table", "json"):
            raise ConfigError(f"--format {fmt!r} is not known", hint="table or json")
        if (calls_per_item is None) != (tokens_per_call is None):
            raise ConfigError(
                "--calls-per-item and --tokens-per-call go together",
                hint="give both, or neither to run a sample",
            )
        tokens = parse_tokens(tokens_per_call) if tokens_per_call is not None else None
        start_ts = None
        if start is not None:
            from datetime import UTC, datetime

            try:
                when = datetime.fromisoformat(start.replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(
                    f"--start {start!r} is not a time", hint="ISO-8601, e.g. 2026-12-01T09:00Z"
                ) from None
            start_ts = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        graphs = registered(os.environ)
        if graph not in graphs:
            raise ConfigError(
                f"--graph {graph!r} is not a registered graph", hint=f"use one of {', '.join(sorted(graphs))}"
            )
        try:
            raw = json.loads(config) if config else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"--config is not JSON ({exc.msg})", hint='e.g. {"max_concurrency": 20}'
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError("--config must be a JSON object", hint='e.g. {"max_concurrency": 20}')
        run_config = RunConfig.model_validate(raw)
        table = load_provider_table(os.environ.get("STEPGRAPH_PROVIDERS"), env=os.environ)
        check_run_config(run_config, table, where="--config")
        price_table = load_prices(prices)
        rows = _items(items, endpoint_url, region)
        measured = None
        if calls_per_item is None:
            from stepgraph.local.sample import measure_sample

            typer.echo(
                f"running {min(sample, len(rows))} sample item(s) through the local stack ...", err=True
            )
            measured = measure_sample(graph, rows[:sample], raw)
        report = build_report(
            len(rows),
            run_config,
            table,
            price_table,
            measured=measured,
            calls=calls_per_item,
            tokens=tokens,
            item_s=item_s,
            start=start_ts,
            live=_live_reader(endpoint_url, region) if live else None,
        )
        if fmt == "json":
            typer.echo(json.dumps(report, indent=2))
        else:
            print_report(report)


def _live_reader(endpoint_url: str | None, region: str | None) -> Any:
    from stepgraph import resources
    from stepgraph.clients import client
    from stepgraph.limiter.store import DynamoDBStore
    from stepgraph.planning.live import LiveLimits

    ddb = client("dynamodb", endpoint_url, region)
    # Asked first so a missing table or credentials end in the CLI's one line for an AWS error.
    ddb.describe_table(TableName=resources.LIMITER_TABLE_NAME)
    return LiveLimits(DynamoDBStore(resources.LIMITER_TABLE_NAME, ddb))


def build_report(
    items: int,
    config: Any,
    table: Any,
    prices: dict[str, Any],
    *,
    measured: Any = None,
    calls: float | None = None,
    tokens: tuple[float, float] | None = None,
    item_s: float | None = None,
    start: float | None = None,
    time_scale: float = 1.0,
    limits_overrides: dict[str, Any] | None = None,
    live: Any = None,
) -> dict[str, Any]:
    """The forecast and the AWS estimate as one JSON-ready dict (the table prints it). `live`
    (`planning.live.LiveLimits`) counts what the limiter table holds now: used only for a batch that
    starts today, as today's counters say nothing of a later day."""
    from dataclasses import asdict

    from stepgraph.limiter.algorithm import DAY_S
    from stepgraph.planning.aws_cost import RunShape, estimate
    from stepgraph.planning.forecast import Workload, chain_capacities, forecast

    concurrency = config.max_concurrency or 10
    if measured is not None:
        calls, tokens = (
            measured.calls_per_item,
            (measured.prompt_tokens_per_call, measured.completion_tokens_per_call),
        )
        item_s = item_s or measured.item_s
    assert calls is not None and tokens is not None
    call_s = 3.0  # one call of a large model on a free tier, when nothing was measured
    work = Workload(
        items=items,
        calls_per_item=calls,
        prompt_tokens_per_call=tokens[0],
        completion_tokens_per_call=tokens[1],
        concurrency=concurrency,
        item_s=item_s or calls * call_s,
        **(
            {"resume_s": measured.resume_s, "start_s": measured.start_s, "end_s": measured.end_s}
            if measured is not None
            else {}
        ),
    )
    now = time.time()
    begins = now if start is None else start
    day_s = DAY_S * time_scale
    live_today = live is not None and begins // day_s == now // day_s
    free, paid = chain_capacities(
        table,
        config.chain(),  # the default role's chain (a run's other roles are not forecast)
        work=work,
        time_scale=time_scale,
        limits_profile=config.limits_profile,
        limits_overrides=limits_overrides,
        live=live if live_today else None,
    )
    fc = forecast(
        work,
        free,
        paid,
        start=begins,
        time_scale=time_scale,
        allow_paid=config.allow_paid,
    )
    shape_kw: dict[str, Any] = {}
    if measured is not None:
        shape_kw = {
            "steps_per_item": measured.steps_per_item,
            "checkpoint_puts_per_item": measured.checkpoint_puts_per_item,
            "usage_puts_per_step": measured.usage_puts_per_step,
        }
    aws = {}
    for label, sched in (("free_only", fc.free_only), ("with_paid", fc.with_paid)):
        if sched is None:
            continue
        shape = RunShape(
            items=items,
            requests=fc.requests,
            paid_requests=sched.paid_requests,
            throttled_steps=sched.throttled_steps,
            step_s=(measured.step_s if measured is not None else (item_s or calls * call_s) / max(calls, 1)),
            **shape_kw,
        )
        aws[label] = estimate(shape, prices)
    return {
        "items": items,
        "workload": asdict(work) | {"measured_by_sample": measured is not None},
        "sample": asdict(measured) if measured is not None else None,
        "requests": fc.requests,
        "tokens": fc.tokens,
        "deployments": fc.deployments,
        "free_only": asdict(fc.free_only) if fc.free_only else None,
        "with_paid": asdict(fc.with_paid) if fc.with_paid else None,
        "aws": aws,
        "live": live_today,
        "prices": {
            "as_of": prices.get("as_of"),
            "checked": prices.get("checked"),
            "region": prices.get("region"),
            "source": prices.get("source"),
        },
    }


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86_400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} days"


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    w = report["workload"]
    how = "measured by the sample" if w["measured_by_sample"] else "as given"
    console.print(
        f"[bold]{report['items']} items[/bold]: {w['calls_per_item']:.2f} calls and "
        f"{w['prompt_tokens_per_call']:.0f}+{w['completion_tokens_per_call']:.0f} tokens per call ({how}); "
        f"{report['requests']:,} requests, {report['tokens']:,} tokens"
    )
    t = Table(title="forecast")
    t.add_column("")
    for label in ("free models only", "with paid fallback"):
        t.add_column(label)
    cols = [report["free_only"], report["with_paid"]]

    def cell(s: dict[str, Any] | None, f: Any) -> str:
        return "—" if s is None else f(s)

    t.add_row("wall time", *(cell(s, lambda s: _duration(s["wall_s"])) for s in cols))
    t.add_row(
        "UTC days", *(cell(s, lambda s: f"{len(s['days'])}: {s['days'][0]} .. {s['days'][-1]}") for s in cols)
    )
    t.add_row(
        "free / paid requests",
        *(cell(s, lambda s: f"{s['free_requests']:,} / {s['paid_requests']:,}") for s in cols),
    )
    t.add_row("provider spend", *(cell(s, lambda s: f"${s['spend_usd']:.4f}") for s in cols))
    aws = report["aws"]
    t.add_row(
        "AWS estimate",
        *(f"${aws[k]['total_usd']:.4f}" if k in aws else "—" for k in ("free_only", "with_paid")),
    )
    console.print(t)
    live = report.get("live")
    d = Table(title="deployments of the chain" + (" (now, from the limiter table)" if live else ""))
    for col in (
        "deployment",
        "free",
        "requests/min",
        "requests/day",
        *(("spent today", "learned") if live else ()),
    ):
        d.add_column(col)
    for dep in report["deployments"]:
        extra = (f"{dep['spent_today']:g}", ", ".join(f"{k}={v}" for k, v in dep["learned"].items()) or "—")
        d.add_row(
            dep["deployment"],
            "yes" if dep["free"] else "no",
            str(dep["requests_per_minute"] or "no limit"),
            str(dep["requests_per_day"] or "no limit"),
            *(extra if live else ()),
        )
    console.print(d)
    key = "free_only" if "free_only" in aws else "with_paid"
    if key in aws:
        a = Table(
            title=f"AWS ({key.replace('_', ' ')}), prices {report['prices']['region']} as of {report['prices']['as_of']}"
        )
        a.add_column("service")
        a.add_column("USD", justify="right")
        for service, usd in aws[key]["usd"].items():
            a.add_row(service, f"{usd:.6f}")
        console.print(a)
