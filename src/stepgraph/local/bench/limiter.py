"""Benchmark: the DynamoDB limiter under 50 concurrent workers vs a naive token bucket."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import typer

from stepgraph.local.bench.report import BenchResult, print_result


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


_tls = threading.local()


def _count_writes(client: Any) -> list[int]:
    counter = [0]

    def hook(**_: Any) -> None:
        counter[0] += 1
        _tls.writes = getattr(_tls, "writes", 0) + 1

    for op in ("PutItem", "UpdateItem", "TransactWriteItems"):
        client.meta.events.register(f"before-call.dynamodb.{op}", hook)
    return counter


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window + 1e-6:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _run_workers(
    workers: int, seconds: float, attempt: Callable[[], tuple[bool, float, float]]
) -> dict[str, Any]:
    sends: list[float] = []
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.time() + seconds

    def loop() -> None:
        while time.time() < stop:
            t0 = time.perf_counter()
            granted, wait, send_at = attempt()
            with lock:
                latencies.append(time.perf_counter() - t0)
                if granted:
                    sends.append(send_at)
            time.sleep(wait)  # refused callers come back after wait_s, as the state machine does

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sends": sends, "latencies": sorted(latencies)}


def _naive_bucket(
    client: Any, table: str, capacity: int, window: float
) -> Callable[[], tuple[bool, float, float]]:
    """The seed's design: read the bucket, refill, write it back without a condition."""
    rate = capacity / window

    def attempt() -> tuple[bool, float, float]:
        now = time.time()
        item = client.get_item(TableName=table, Key={"pk": {"S": "naive"}}, ConsistentRead=True).get("Item")
        tokens = float(item["tokens"]["N"]) if item else float(capacity)
        last = float(item["last"]["N"]) if item else now
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens < 1:
            return False, (1 - tokens) / rate, 0.0
        client.put_item(
            TableName=table,
            Item={"pk": {"S": "naive"}, "tokens": {"N": repr(tokens - 1)}, "last": {"N": repr(now)}},
        )
        return True, 0.0, now

    return attempt


def run(
    workers: int = 50,
    seconds: float = 10.0,
    capacity: int = 40,
    window: float = 1.0,
    max_wait_s: float = 1.0,
    warmup_s: float = 5.0,
) -> BenchResult:
    from stepgraph.limiter import DynamoDBRateLimiter, Limit
    from stepgraph.limiter.dynamodb_local import start_dynamodb_local
    from stepgraph.limiter.table import ensure_limiter_table

    result = BenchResult(
        "limiter", f"stepgraph bench limiter --workers {workers} --seconds {seconds:g} --capacity {capacity}"
    )
    limit_rate = capacity / window
    with start_dynamodb_local() as endpoint:
        client = _client(endpoint)
        ensure_limiter_table(client, "bench")
        writes = _count_writes(client)

        split = {"granted": 0, "refused": 0}
        split_lock = threading.Lock()

        def attempts(key: str) -> Callable[[], tuple[bool, float, float]]:
            local = threading.local()

            def attempt() -> tuple[bool, float, float]:
                # Each thread has its own limiter (as each Lambda has), all on one key.
                if not hasattr(local, "lim"):
                    local.lim = DynamoDBRateLimiter(
                        "bench", key, [Limit("r", capacity, window)], client=client, max_wait_s=max_wait_s
                    )
                before = getattr(_tls, "writes", 0)
                g = local.lim.try_acquire()
                with split_lock:
                    split["granted" if g.granted else "refused"] += getattr(_tls, "writes", 0) - before
                return g.granted, g.wait_s, g.send_at

            return attempt

        # DynamoDB Local is a JVM: its first seconds run interpreted and collect garbage often, which no
        # DynamoDB table does. Load it on another key first, then count from zero.
        _run_workers(workers, warmup_s, attempts("warm-up"))
        split.update(granted=0, refused=0)
        writes[0] = 0
        ours = _run_workers(workers, seconds, attempts("bench"))
        ours_writes = writes[0]
        naive_client = _client(endpoint)
        naive = _run_workers(workers, seconds, _naive_bucket(naive_client, "bench", capacity, window))

    def rate(sends: list[float]) -> float:
        return (len(sends) - 1) / (max(sends) - min(sends)) if len(sends) > 1 else 0.0

    ours_rate, naive_rate = rate(ours["sends"]), rate(naive["sends"])
    result.add("grant rate", ours_rate, "grants/s", baseline=naive_rate, baseline_label="naive bucket")
    result.add("utilization", ours_rate / limit_rate, "of limit", goal=">= 0.97")
    result.add(
        "max in any window",
        max_in_window(ours["sends"], window),
        "grants",
        baseline=max_in_window(naive["sends"], window),
        baseline_label="naive bucket",
        goal=f"<= {capacity}",
    )
    violations = max(0, max_in_window(ours["sends"], window) - capacity)
    naive_violations = max(0, max_in_window(naive["sends"], window) - capacity)
    result.add(
        "window violations",
        violations,
        "grants over limit",
        baseline=naive_violations,
        baseline_label="naive bucket",
        goal="0",
    )
    grants = max(1, len(ours["sends"]))
    result.add("writes per grant (granting calls)", split["granted"] / grants, "calls", goal="<= 1.2")
    result.add("refused conditional writes per grant", split["refused"] / grants, "calls")
    result.add("all write calls per grant", ours_writes / grants, "calls")
    lat = ours["latencies"]
    result.add(
        "try_acquire p50",
        statistics.median(lat) * 1000,
        "ms",
        baseline=statistics.median(naive["latencies"]) * 1000,
        baseline_label="naive bucket",
    )
    result.add("try_acquire p99", lat[int(len(lat) * 0.99) - 1] * 1000, "ms")
    result.notes.append(
        f"{workers} threads, limit {capacity}/{window:g}s, max_wait_s {max_wait_s:g}, {seconds:g}s each after "
        f"{warmup_s:g}s of the same load on another key, DynamoDB Local; refused callers come back after wait_s; "
        "the naive bucket reads then writes without a condition (the seed's design)."
    )
    return result


def cli(
    workers: int = typer.Option(50, min=1, help="Concurrent workers"),
    seconds: float = typer.Option(10.0, min=1, help="Seconds per run"),
    capacity: int = typer.Option(40, min=1, help="Grants per second allowed"),
    max_wait_s: float = typer.Option(1.0, min=0, help="How far ahead a grant may reserve"),
) -> None:
    print_result(run(workers, seconds, capacity, max_wait_s=max_wait_s))
