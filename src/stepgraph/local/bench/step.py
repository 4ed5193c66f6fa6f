"""Benchmark: the graph-step handler's own cost per superstep, and its cold import time.

Overhead per superstep = handler wall time minus the time spent inside provider HTTP calls, divided by
the supersteps it ran. The baseline is the same graph compiled bare (InMemorySaver, a plain ChatOpenAI,
no limiter, ledger or S3), measured the same way. AWS is moto in-process, so S3/DynamoDB round trips
cost far less than in a region: the figure is the library's CPU cost, not network latency.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from stepgraph import resources
from stepgraph.local.bench.report import BenchResult, print_result

_HANDLER_IMPORT = (
    "import sys; sys.path.insert(0, {path!r}); import handler"  # how Lambda loads handler.handler
)
_BARE_IMPORT = "import langgraph.graph, langchain_openai"
# What the first step imports on top of the handler module (deferred so the init phase stays short).
_FIRST_STEP_IMPORTS = "; import langgraph.graph, langchain_openai, stepgraph.graphs.document_pipeline"


class _HttpTimer:
    """Accumulates the time spent inside httpx sends (the provider's share of a step)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextmanager
    def installed(self) -> Iterator[None]:
        import importlib

        # openai ships on httpx or on its fork httpx2 depending on the version: time whichever is there.
        clients = []
        for name in ("httpx", "httpx2"):
            try:
                clients.append(importlib.import_module(name).Client)
            except ImportError:
                continue
        originals = [(cls, cls.send) for cls in clients]

        def timed(original: Any) -> Any:
            def send(client: Any, request: Any, **kw: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return original(client, request, **kw)
                finally:
                    self.seconds += time.perf_counter() - t0

            return send

        for cls, original in originals:
            cls.send = timed(original)
        try:
            yield
        finally:
            for cls, original in originals:
                cls.send = original


def lambda_env(handler_dir: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """What the Lambda runtime and the stack set for graph-step. It matters: outside Lambda (no
    LAMBDA_TASK_ROOT) the X-Ray SDK behind Powertools' Tracer builds a botocore client for centralised
    sampling at import, ~0.3 s that never happens in a function."""
    return {
        **(base if base is not None else os.environ),
        "PYTHONWARNINGS": "ignore",
        "LAMBDA_TASK_ROOT": handler_dir,
        "_HANDLER": "handler.handler",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": resources.GRAPH_STEP_FUNCTION,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": resources.SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": resources.METRIC_NAMESPACE,
    }


def cold_imports_s(
    codes: list[str], runs: int, *, python: list[str] | None = None, env: dict[str, str] | None = None
) -> list[float]:
    """Median wall time of `python -c code` for each code in fresh processes, minus the interpreter's bare
    start-up. The codes take turns within each round, so a machine that gets busier or quieter during the
    measurement shifts every figure alike instead of favouring whichever ran first."""
    cmd = python or [sys.executable]
    env = env or {**os.environ, "PYTHONWARNINGS": "ignore"}

    def once(src: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([*cmd, "-c", src], check=True, env=env, capture_output=True)
        return time.perf_counter() - t0

    for code in codes:
        once(code)  # a first run writes any missing bytecode caches, as the layer ships them
    samples: list[list[float]] = [[] for _ in range(len(codes) + 1)]
    variants = ["pass", *codes]
    for r in range(runs):
        order = list(range(len(variants)))
        shift = r % len(order)
        for i in order[shift:] + order[:shift]:
            samples[i].append(once(variants[i]))
    startup = statistics.median(samples[0])
    return [statistics.median(s) - startup for s in samples[1:]]


def _env(base_url: str, ollama: str) -> dict[str, str]:
    from stepgraph.local.simulator import DEV_KEY

    return {
        "STEPGRAPH_BUCKET": resources.DATA_BUCKET_NAME,
        "STEPGRAPH_LIMITER_TABLE": resources.LIMITER_TABLE_NAME,
        "STEPGRAPH_OPENROUTER_BASE_URL": base_url,
        "STEPGRAPH_OLLAMA_BASE_URL": ollama,
        "STEPGRAPH_LIMITS_OVERRIDES": '{"rpm": {"capacity": 100000}, "rpd": {"capacity": 1000000}}',
        "OPENROUTER_API_KEY": f"bench={DEV_KEY}",
        "OLLAMA_API_KEY": f"bench={DEV_KEY}",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


@contextmanager
def _patched_env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _handler_overhead(items: int, base_url: str, ollama: str) -> tuple[float, float]:
    """(overhead ms per superstep, supersteps per item) for the real handler on moto."""
    import boto3
    from moto import mock_aws

    from stepgraph.limiter.table import ensure_limiter_table
    from stepgraph.local.lambdas import cold_start, invoke

    timer = _HttpTimer()
    with _patched_env(_env(base_url, ollama)), mock_aws(), timer.installed():
        cold_start()
        boto3.client("s3").create_bucket(Bucket=resources.DATA_BUCKET_NAME)
        ensure_limiter_table(boto3.client("dynamodb"), resources.LIMITER_TABLE_NAME)

        def event(i: int) -> dict[str, Any]:
            return {
                "execution_id": "arn:aws:states:us-east-1:123456789012:execution:bench:run",
                "item_id": i,
                "item": {"text": f"Ticket {i}: the invoice total is wrong.", "max_rounds": 1},
                "graph": "document_pipeline",
            }

        invoke(resources.GRAPH_STEP_FUNCTION, event(-1))  # warm container: clients, graph module, limiter
        timer.seconds, steps = 0.0, 0
        t0 = time.perf_counter()
        for i in range(items):
            result = invoke(resources.GRAPH_STEP_FUNCTION, event(i))
            assert result["status"] == "done", result
            steps += result["steps"]
        wall = time.perf_counter() - t0
        cold_start()
    return (wall - timer.seconds) / steps * 1000, steps / items


def _bare_overhead(items: int, base_url: str) -> float:
    from langchain_openai import ChatOpenAI
    from langgraph.checkpoint.memory import InMemorySaver

    from stepgraph.graphs import StepContext, load_graph
    from stepgraph.local.simulator import DEV_KEY

    model = ChatOpenAI(model="openai/gpt-oss-120b:free", base_url=base_url, api_key=DEV_KEY, max_retries=0)  # type: ignore[arg-type]
    graph = load_graph("document_pipeline").compile(checkpointer=InMemorySaver())
    timer = _HttpTimer()
    with timer.installed():
        steps = 0
        t0 = time.perf_counter()
        for i in range(items):
            cfg = {"configurable": {"thread_id": f"bare-{i}"}}
            for _ in graph.stream(
                {"text": f"Ticket {i}: the invoice total is wrong.", "max_rounds": 1},
                cfg,  # type: ignore[arg-type]
                context=StepContext(model=model, item_id=str(i)),
                stream_mode="updates",
            ):
                steps += 1
        wall = time.perf_counter() - t0
    return (wall - timer.seconds) / steps * 1000


def run(items: int = 30, import_runs: int = 9) -> BenchResult:
    from stepgraph.local.simulator import running_simulator

    with running_simulator(rpm=1_000_000, rpd=10_000_000) as sim:
        handler_ms, steps_per_item = _handler_overhead(items, sim.base_url, sim.ollama_base_url)
        bare_ms = _bare_overhead(items, sim.base_url)
    handler_dir = str(resources.data_path("lambdas", "graph_step"))
    handler = _HANDLER_IMPORT.format(path=handler_dir)
    handler_import, cold_start, bare_import = cold_imports_s(
        [handler, handler + _FIRST_STEP_IMPORTS, _BARE_IMPORT], import_runs, env=lambda_env(handler_dir)
    )
    result = BenchResult("step", f"stepgraph bench step --items {items}")
    result.add(
        "handler overhead per superstep",
        handler_ms,
        "ms",
        baseline=bare_ms,
        baseline_label="bare graph, InMemorySaver, plain ChatOpenAI",
    )
    result.add("supersteps per item", steps_per_item, "")
    result.add(
        "cold import of lambdas/graph_step/handler.py",
        handler_import,
        "s",
        baseline=bare_import,
        baseline_label=f"`{_BARE_IMPORT}`",
        goal="<= 1.0 s and <= 1.25x baseline",
    )
    result.add(
        "handler import + what its first step imports",
        cold_start,
        "s",
        baseline=bare_import,
        baseline_label=f"`{_BARE_IMPORT}`",
        goal="<= 1.25x baseline",
    )
    result.notes.append(
        "Overhead excludes time inside provider HTTP calls (the simulator, no added latency). It covers the "
        "limiter's DynamoDB write, the S3 checkpoint writes, the usage ledger and the result object on moto in "
        "process, so real AWS adds network round trips on top. Import times are medians of fresh processes "
        "with bytecode cached, less the interpreter's own start-up, with the environment Lambda sets."
    )
    return result


def cli(
    items: int = typer.Option(30, min=1, help="Items to run through the handler"),
    import_runs: int = typer.Option(9, min=1, help="Fresh processes per import measurement"),
) -> None:
    print_result(run(items, import_runs))
