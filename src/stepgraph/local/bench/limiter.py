"""Benchmark: the DynamoDB limiter under 50 concurrent workers vs a naive token bucket, and a pool of
deployments asked the way the router asks them (every write call counted, granted and refused)."""

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


# The pool's deployments split the same total limit unevenly, as free providers do.
POOL_SHARES = (0.4, 0.3, 0.2, 0.1)


def _pool_attempts(
    client: Any,
    capacity: int,
    window: float,
    max_wait_s: float,
    deployments: int,
    tag: str,
    split: dict[str, int],
) -> Callable[[], tuple[bool, float, float]]:
    """Each thread (a Lambda) has its own limiter per deployment and asks them with the router's `pick`."""
    from stepgraph.limiter import DynamoDBRateLimiter, Limit
    from stepgraph.providers.keys import KeyRing
    from stepgraph.providers.pool import Blocked, Route, pick
    from stepgraph.providers.table import ModelSpec

    shares = POOL_SHARES if deployments == len(POOL_SHARES) else (1 / deployments,) * deployments
    caps = [max(1, round(capacity * share)) for share in shares]
    local = threading.local()
    lock = threading.Lock()

    def attempt() -> tuple[bool, float, float]:
        if not hasattr(local, "routes"):
            local.routes = [
                Route(
                    f"d{i}",
                    "m",
                    ModelSpec.model_validate({"free": True}),
                    KeyRing(f"d{i}", []),
                    lambda key: None,  # type: ignore[arg-type, return-value]
                    DynamoDBRateLimiter(
                        "bench",
                        f"{tag}-d{i}",
                        [Limit("r", cap, window)],
                        client=client,
                        max_wait_s=max_wait_s,
                    ),
                    pool="pool:bench",
                )
                for i, cap in enumerate(caps)
            ]
        before = getattr(_tls, "writes", 0)
        chosen = pick(
            local.routes,
            now=time.time(),
            costs=lambda r: 1,
            horizon=lambda r: max_wait_s,
            not_before={},
        )
        with lock:
            split["granted" if not isinstance(chosen, Blocked) else "refused"] += (
                getattr(_tls, "writes", 0) - before
            )
        if isinstance(chosen, Blocked):
            return False, chosen.wait_s, 0.0
        return True, chosen.grant.wait_s, chosen.grant.send_at

    return attempt


def simulated(
    workers: int,
    seconds: float,
    capacity: int,
    window: float,
    max_wait_s: float,
    deployments: int,
    *,
    plain: bool = False,
) -> tuple[float, float]:
    """The same contention in simulated time on the in-memory store (no DynamoDB latency, no machine
    load): every worker asks at the instants it would, the router's `pick` over its own limiters.
    `plain`: each worker calls `try_acquire()` on its first limiter instead (one key, as before pools).
    Returns (all write calls per grant, utilization of the limit within the run)."""
    import heapq

    from stepgraph.clock import FakeClock
    from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
    from stepgraph.providers.keys import KeyRing
    from stepgraph.providers.pool import Blocked, Picked, Route, pick
    from stepgraph.providers.table import ModelSpec

    clock, store = FakeClock(), MemoryStore()
    shares = POOL_SHARES if deployments == len(POOL_SHARES) else (1 / deployments,) * deployments
    caps = [max(1, round(capacity * share)) for share in shares]

    def routes() -> list[Route]:
        return [
            Route(
                f"d{i}",
                "m",
                ModelSpec.model_validate({"free": True}),
                KeyRing(f"d{i}", []),
                lambda key: None,  # type: ignore[arg-type, return-value]
                DynamoDBRateLimiter(
                    "sim", f"d{i}", [Limit("r", cap, window)], store=store, clock=clock, max_wait_s=max_wait_s
                ),
                pool="pool:sim",
            )
            for i, cap in enumerate(caps)
        ]

    per_worker = [routes() for _ in range(workers)]
    start = clock.now()
    end = start + seconds
    queue = [(start + i * 1e-4, i) for i in range(workers)]
    sends = 0
    while queue:
        at, worker = heapq.heappop(queue)
        if at > end:
            break
        clock.advance(max(0.0, at - clock.now()))
        if plain:
            grant = per_worker[worker][0].limiter.try_acquire()
            chosen: Picked | Blocked = (
                Picked(per_worker[worker][0], grant)
                if grant.granted
                else Blocked(grant.wait_s, "", "limiter")
            )
        else:
            chosen = pick(
                per_worker[worker], now=at, costs=lambda r: 1, horizon=lambda r: max_wait_s, not_before={}
            )
        if isinstance(chosen, Blocked):
            heapq.heappush(queue, (at + max(chosen.wait_s, 1e-3), worker))
            continue
        sends += chosen.grant.send_at <= end
        heapq.heappush(queue, (chosen.grant.send_at + 1e-3, worker))  # sent: the worker's next call
    return store.writes / max(1, sends), sends / (seconds * capacity / window)


def run(
    workers: int = 50,
    seconds: float = 10.0,
    capacity: int = 40,
    window: float = 1.0,
    max_wait_s: float = 1.0,
    warmup_s: float = 5.0,
    deployments: int = 4,
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
        pool_split = {"granted": 0, "refused": 0}
        writes[0] = 0
        pool = _run_workers(
            workers,
            seconds,
            _pool_attempts(client, capacity, window, max_wait_s, deployments, "pool", pool_split),
        )
        pool_writes = writes[0]

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
    pool_grants = max(1, len(pool["sends"]))
    pool_per_grant = pool_writes / pool_grants
    result.add(
        f"pool of {deployments}: all write calls per grant",
        pool_per_grant,
        "calls",
        baseline=ours_writes / grants,
        baseline_label="one key",
        goal="<= 1.5",
    )
    result.add(
        f"pool of {deployments}: refused write calls per grant", pool_split["refused"] / pool_grants, "calls"
    )
    result.add(f"pool of {deployments}: utilization", rate(pool["sends"]) / limit_rate, "of the pooled limit")
    result.add(
        "write calls per grant: pool / one key", pool_per_grant / max(1e-9, ours_writes / grants), "ratio"
    )
    old_sim, _ = simulated(workers, 60.0, capacity, window, max_wait_s, 1, plain=True)
    pool_sim, pool_util = simulated(workers, 60.0, capacity, window, max_wait_s, deployments)
    result.add("simulated, one key, plain try_acquire: all write calls per grant", old_sim, "calls")
    result.add(
        f"simulated, pool of {deployments}: all write calls per grant",
        pool_sim,
        "calls",
        baseline=old_sim,
        baseline_label="one key, plain",
        goal="<= 1.5",
    )
    result.add(
        f"simulated, pool of {deployments}: utilization", pool_util, "of the pooled limit", goal=">= 0.97"
    )
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
        "the naive bucket reads then writes without a condition (the seed's design). The pool run splits the "
        f"same limit over {deployments} deployments (shares {', '.join(f'{x:g}' for x in POOL_SHARES)} for 4) "
        "and asks them as the router does (soonest first, a refusal the last read proves costs no write); "
        "its write calls count granted and refused ones. The simulated rows run the same workers in simulated "
        "time (60 s) on the in-memory store, free of DynamoDB Local's latency and the machine's load."
    )
    return result


def cli(
    workers: int = typer.Option(50, min=1, help="Concurrent workers"),
    seconds: float = typer.Option(10.0, min=1, help="Seconds per run"),
    capacity: int = typer.Option(40, min=1, help="Grants per second allowed"),
    max_wait_s: float = typer.Option(1.0, min=0, help="How far ahead a grant may reserve"),
    deployments: int = typer.Option(4, min=1, help="Deployments in the pool run"),
) -> None:
    print_result(run(workers, seconds, capacity, max_wait_s=max_wait_s, deployments=deployments))
