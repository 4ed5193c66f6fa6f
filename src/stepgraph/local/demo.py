"""`stepgraph demo`: a real batch through the real state machine definition, on one machine.

The simulator stands in for OpenRouter, moto for AWS (Step Functions executes the ASL, Lambda calls go
to the handler files), DynamoDB Local for the limiter, DuckDB for the Athena SQL.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from stepgraph import resources
from stepgraph.local.demo_view import failed_items, pool_progress_table, print_failures, progress_table
from stepgraph.local.simulator import DEV_KEY, running_simulator
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.progress import RunCounters

OLLAMA_DEMO_KEY = "sk-sim-ollama"
FAULTS = {"none": {}, "mixed": {"fail_rate": 0.05, "stream_error_rate": 0.0, "jitter_ms": 5.0}}


@dataclass
class DemoOptions:
    items: int | None = 40  # None: exactly the items of `items_file`
    graph: str = "document_pipeline"
    concurrency: int = 10
    rpm: int = 20
    rpd: int = 1000
    faults: str = "mixed"
    time_scale: float = 0.05
    items_file: Path = field(default_factory=lambda: resources.data_path("items", "tickets.jsonl"))
    out_dir: Path = Path(".stepgraph") / "demo"
    seed: int = 1
    # The provider runs apart from the stack, as a real one does (see running_simulator).
    simulator_process: bool = True
    pool: bool = False  # several simulated free providers in one pool (stepgraph.local.demo_pool)
    pool_providers: tuple[Any, ...] | None = None  # --pool: SimProviders (default: demo_pool's DEMO_POOL)
    models: list[str] | None = None  # --pool: the execution's config.models (default: the pool)
    # Answer reviews as they appear ("approve" or "reject"), so a graph with interrupt() ends by itself.
    auto_review: str | None = None


AUTO_REVIEWS = {"approve": {"action": "approve"}, "reject": {"action": "reject"}}


def answer_reviews(reviewer: Any, value: Any) -> int:
    """Answer every item waiting now; one answered meanwhile by someone else is skipped."""
    from stepgraph.review.answer import NotWaiting

    answered = 0
    for row in reviewer.pending():
        try:
            reviewer.answer(str(row["item_id"]), value)
            answered += 1
        except NotWaiting:
            pass
    return answered


def load_items(path: Path, n: int | None) -> list[Any]:
    """The file's items; with `n`, cycled (or cut) to `n`, copies of object items getting their own `id`."""
    from stepgraph.errors import ConfigError
    from stepgraph.executions import read_items

    items = read_items(path)
    if not items:
        raise ConfigError(f"--items-file {path}: the file holds no items", hint="one JSON value per line")
    if n is None:
        return items
    return [
        dict(item, id=f"{item.get('id', i)}-{k}") if k and isinstance(item, dict) else item
        for k, (i, item) in zip(itertools.count(), itertools.islice(itertools.cycle(enumerate(items)), n))
    ]


def check_options(opts: DemoOptions) -> list[Any]:
    """Every flag checked before anything starts; returns the items."""
    import os

    from stepgraph.errors import ConfigError
    from stepgraph.graphs.registry import registered

    graphs = registered(os.environ)  # the demo's functions see this process's STEPGRAPH_GRAPHS
    if opts.graph not in graphs:
        raise ConfigError(
            f"--graph {opts.graph!r} is not a registered graph",
            hint=f"use one of {', '.join(sorted(graphs))}",
        )
    if opts.faults not in FAULTS:
        raise ConfigError(f"--faults {opts.faults!r} is not known", hint=f"use one of {', '.join(FAULTS)}")
    if opts.auto_review is not None and opts.auto_review not in AUTO_REVIEWS:
        raise ConfigError(
            f"--auto-review {opts.auto_review!r} is not known", hint=f"use one of {', '.join(AUTO_REVIEWS)}"
        )
    items = load_items(opts.items_file, opts.items)
    try:  # the copy at the end must not fail after the whole batch ran
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        probe = opts.out_dir / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"--out {opts.out_dir}: cannot write there ({exc.strerror})",
            hint="pick a directory you can write",
        ) from None
    return items


def _export(stack: LocalStack, run: str, out: Path) -> Path:
    """Copy the run's usage records and results out of moto, so they outlive the demo."""
    s3 = stack.client("s3")
    target = out / run
    if target.exists():
        shutil.rmtree(target)
    (target / resources.PREFIX_USAGE).mkdir(parents=True)  # a run with no records still has a usage root
    for prefix in (resources.PREFIX_USAGE, f"{resources.PREFIX_RESULTS}{run}/"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                path = target / obj["Key"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(s3.get_object(Bucket=stack.bucket, Key=obj["Key"])["Body"].read())
    return target


def _pool_result(
    console: Console,
    opts: DemoOptions,
    stats: dict[str, Any],
    by_provider: dict[str, list[dict[str, Any]]],
    out: Path,
    items: list[Any],
    done: int,
    failures: list[dict[str, Any]],
    elapsed: float,
    request_ts: list[float],
) -> DemoResult:
    from stepgraph.local.demo_pool import provider_rows, summary_line, totals

    console.print(provider_rows(stats))
    console.print(summary_line(stats))
    console.print(f"results and usage records: {out}  (try: stepgraph usage report --source {out})")
    failed = len(items) - done
    console.print(f"[{'green' if failed == 0 else 'red'}]{done} of {len(items)} items done[/]")
    if failures:
        console.print(f"failed items ({len(failures)}):")
        print_failures(console, failures)
    t = totals(stats)
    window_s = 60 * opts.time_scale
    return DemoResult(
        len(items),
        failed,
        elapsed,
        t["requests"],
        window_s,
        t["max_in_window"],
        t["window_violations"],
        request_ts,
        t["rate_limited"],
        providers=stats["providers"],
        provider_requests=by_provider,
    )


@dataclass
class DemoResult:
    items: int
    failed: int
    elapsed_s: float
    requests: int
    window_s: float
    max_in_window: int
    window_violations: int
    request_ts: list[float] = field(default_factory=list)  # when each admitted provider request arrived
    rate_limited: int = 0  # requests the provider answered 429
    providers: dict[str, Any] = field(default_factory=dict)  # --pool: each provider's simulator stats
    provider_requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # --pool: request logs


def run_demo(
    opts: DemoOptions,
    console: Console | None = None,
    after: Callable[[LocalStack, str, Path], None] | None = None,
) -> DemoResult:
    """Run the batch; `failed` counts the items that did not finish (the exit code is non-zero then).
    `after(stack, execution_arn, export_dir)` runs once the batch ended, while the stack is still up."""
    import os

    from stepgraph.local import map_runs
    from stepgraph.usage.report import render, run_report

    console = console or Console()
    items = check_options(opts)
    map_runs.quiet_interpreter()
    run = f"demo-{uuid.uuid4().hex[:8]}"
    sim_opts: dict[str, Any] = {
        "rpm": opts.rpm,
        "rpd": opts.rpd,
        "time_scale": opts.time_scale,
        "seed": opts.seed,
        # Ollama Cloud is another provider account: its fallback calls must not use OpenRouter's quota.
        "accounts": {
            "accounts": {
                "default": {"keys": {DEV_KEY: "demo"}},
                "ollama": {"keys": {OLLAMA_DEMO_KEY: "demo"}, "rpm": None, "rpd": None},
            }
        },
        **FAULTS[opts.faults],
    }
    if opts.pool:
        from stepgraph.local.demo_pool import pool_simulator_options

        sim_opts = pool_simulator_options(opts, opts.pool_providers)
    with running_simulator(own_process=opts.simulator_process, **sim_opts) as sim:
        env = {
            "STEPGRAPH_TIME_SCALE": str(opts.time_scale),
            "STEPGRAPH_STEP_MARGIN_S": "1",
            "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
            "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
            "OPENROUTER_API_KEY": f"demo={DEV_KEY}",
            "OLLAMA_API_KEY": f"demo={OLLAMA_DEMO_KEY}",
            "STEPGRAPH_LIMITS_OVERRIDES": json.dumps(
                {"rpm": {"capacity": opts.rpm}, "rpd": {"capacity": opts.rpd}}
            ),
            # The graphs `check_options` accepted, as a deployment's function would be configured.
            **(
                {"STEPGRAPH_GRAPHS": os.environ["STEPGRAPH_GRAPHS"]}
                if "STEPGRAPH_GRAPHS" in os.environ
                else {}
            ),
        }
        config: dict[str, Any] = {"max_concurrency": opts.concurrency}
        if opts.pool:
            from stepgraph.local.demo_pool import pool_config, pool_env

            env = {k: v for k, v in env.items() if not k.endswith("_BASE_URL")} | pool_env(
                sim, opts.pool_providers
            )
            env.pop("STEPGRAPH_LIMITS_OVERRIDES")  # each provider's limits are in the pool's table
            config.update(pool_config(opts.models))
            console.print(
                f"[bold]stepgraph demo --pool[/bold]: {len(items)} items, graph {opts.graph}, over "
                f"{', '.join(sim.stats()['providers'])} (a minute lasts {60 * opts.time_scale:g} s), faults {opts.faults}"
            )
        else:
            console.print(
                f"[bold]stepgraph demo[/bold]: {len(items)} items, graph {opts.graph}, "
                f"limit {opts.rpm}/min and {opts.rpd}/day (a minute lasts {60 * opts.time_scale:g} s), faults {opts.faults}"
            )
        with local_stack(env=env) as stack:
            s3 = stack.client("s3")
            key = f"{resources.PREFIX_ITEMS}{run}/items.json"
            s3.put_object(Bucket=stack.bucket, Key=key, Body=json.dumps(items).encode())
            sfn = stack.client("stepfunctions")
            payload = {
                "graph": opts.graph,
                "items_s3": {"bucket": stack.bucket, "key": key},
                "config": config,
            }
            arn = sfn.start_execution(
                stateMachineArn=stack.state_machine_arn, name=run, input=json.dumps(payload)
            )["executionArn"]
            started = time.monotonic()
            reviewer = None
            if opts.auto_review:
                from stepgraph.review.answer import Reviews
                from stepgraph.review.store import ReviewStore

                reviewer = Reviews(arn, ReviewStore(stack.bucket, s3), sfn)
            reviewed = 0
            counters = RunCounters(stack.limiter_table, arn, client=stack.dynamodb_client())

            def progress() -> Table | Group:
                if opts.pool:
                    return pool_progress_table(stack, counters, sim, len(items), run, started)
                return progress_table(stack, counters, sim, len(items), run, started, opts.rpm)

            with Live(progress(), console=console, refresh_per_second=4) as live:
                while (status := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
                    time.sleep(0.5)
                    if reviewer is not None:
                        reviewed += answer_reviews(reviewer, AUTO_REVIEWS[opts.auto_review or "approve"])
                    live.update(progress())
                live.update(progress())
            elapsed = time.monotonic() - started
            if reviewer is not None:
                console.print(f"reviews answered {opts.auto_review!r} automatically: {reviewed}")
            if status["status"] != "SUCCEEDED":
                console.print(
                    f"[red]execution {status['status']}[/red]: {status.get('error')} {status.get('cause')}"
                )
                return DemoResult(len(items), len(items), elapsed, 0, 0.0, 0, 0)
            out = _export(stack, run, opts.out_dir)
            if after is not None:
                after(stack, arn, out)
            done = len(list((out / resources.PREFIX_RESULTS / run).glob("*.json")))
            failures = failed_items(stack, run)
            stats = sim.stats()
            if opts.pool:
                by_provider = {name: sim.provider(name).requests() for name in stats["providers"]}
                request_ts = sorted(
                    q["ts"] for log in by_provider.values() for q in log if q["status"] != 429
                )
            else:
                by_provider = {}
                # What the provider admitted (a 429 from its window used nothing of the limit).
                request_ts = sorted(q["ts"] for q in sim.requests() if q["status"] != 429)
        report = run_report(
            str(out), queries=["spend_by_day_model", "latency_by_model", "failures_by_status"]
        )
        console.print(render(report, "table"))
        if opts.pool:
            return _pool_result(
                console, opts, stats, by_provider, out, items, done, failures, elapsed, request_ts
            )
        account = stats["accounts"]["default"]
        console.print(
            f"simulator: {stats['requests']} requests, {stats['rate_limited']} answered 429, errors {stats['errors_by_status']}; "
            f"most requests admitted in any {account['window_s']:g}-s window: {account['max_in_window']} (limit {opts.rpm}), "
            f"window violations: {account['window_violations']}"
        )
        console.print(f"results and usage records: {out}  (try: stepgraph usage report --source {out})")
        failed = len(items) - done
        console.print(f"[{'green' if failed == 0 else 'red'}]{done} of {len(items)} items done[/]")
        if failures:
            console.print(f"failed items ({len(failures)}):")
            print_failures(console, failures)
        return DemoResult(
            len(items),
            failed,
            elapsed,
            stats["requests"],
            account["window_s"],
            account["max_in_window"],
            account["window_violations"],
            request_ts,
            stats["rate_limited"],
        )
