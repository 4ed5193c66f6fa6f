"""Benchmark: document_pipeline over a pool of 4 simulated free providers (different rpm/tpm/day limits)."""

from __future__ import annotations

import bisect
import io
import math
from dataclasses import dataclass, replace
from typing import Any

import typer
from rich.console import Console

from stepgraph.local.bench.report import BenchResult, print_result
from stepgraph.local.pool import MAX_TOKENS, SimProvider

# Limits per (scaled) minute and day: OpenRouter bound by requests (and a day cap), Groq by tokens per minute,
# Cerebras by requests with its up-front token reservation, NVIDIA by requests and a small day cap.
BENCH_POOL = (
    SimProvider("openrouter", rpm=24, rpd=2000),
    SimProvider("groq", rpm=16, rpd=1000, tpm=2400, tpd=200_000),
    SimProvider("cerebras", rpm=10, rpd=14_400, tpm=12_000, tpd=1_000_000),
    SimProvider("nvidia", rpm=10, rpd=150),
)
BUSY = 0.8  # the run's busy part: until this share of the requests was sent (items still queue)


def max_in_window(ts: list[float], window_s: float) -> int:
    ts = sorted(ts)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def provider_capacity(
    p: SimProvider, stats: dict[str, Any], span_s: float, window_s: float, admitted_tokens: float = 0.0
) -> float:
    """Requests the provider could admit in `span_s`: the tightest of its request, token and day limits.
    Tokens as the provider counts them: each request's usage once answered (Cerebras: its reservation),
    and `admitted_tokens` (prompt + max_tokens) for the one it admits, so a window holds the usage of
    `(tpm - admitted_tokens) // usage` whole requests before that one, then that one."""
    windows = span_s / window_s
    account = stats["accounts"]["default"]
    bounds = [p.rpm * windows] if p.rpm else []
    per_request = account["day_tokens"] / account["day_count"] if account["day_count"] else 0
    if p.tpm and per_request:
        at_admission = max(admitted_tokens, per_request)
        bounds.append((math.floor((p.tpm - at_admission) / per_request) + 1) * windows)
    if p.rpd:
        bounds.append(float(p.rpd))
    return min(bounds) if bounds else float("inf")


def pooled_utilization(run: Any, providers: tuple[SimProvider, ...], window_s: float) -> tuple[float, float]:
    """(admitted requests / the pool's capacity, the span) over the busy part of the run."""
    admitted = {
        n: sorted(q["ts"] for q in log if q["status"] != 429) for n, log in run.provider_requests.items()
    }
    every = sorted(t for ts in admitted.values() for t in ts)
    if len(every) < 2:
        return 0.0, 0.0
    start, end = every[0], every[int(len(every) * BUSY) - 1]
    span = end - start
    used = bisect.bisect_right(every, end) - bisect.bisect_left(every, start)
    capacity = sum(
        provider_capacity(p, run.providers[p.name], span, window_s, admitted_tokens(run, p.name))
        for p in providers
    )
    return used / capacity if capacity else 0.0, span


def admitted_tokens(run: Any, provider: str) -> float:
    """What the provider counted when it admitted a request, on average: its prompt and the max_tokens
    the router sends (local.pool.MAX_TOKENS)."""
    prompts = [q["prompt_tokens"] for q in run.provider_requests.get(provider, []) if q.get("prompt_tokens")]
    return sum(prompts) / len(prompts) + MAX_TOKENS if prompts else 0.0


def window_violations(run: Any, providers: tuple[SimProvider, ...], window_s: float) -> int:
    """Requests SENT over a provider's per-minute limit in any sliding window (every arrival that reached an
    account, whatever the answer: a 429 too), plus tokens the provider counted over its per-minute token
    limit. Attempts on a provider that is down reach no account and count against nothing."""
    over = 0
    for p in providers:
        arrivals = [q["ts"] for q in run.provider_requests.get(p.name, []) if q.get("account")]
        if p.rpm:
            over += max(0, max_in_window(arrivals, window_s) - p.rpm)
        over += run.providers[p.name]["accounts"]["default"]["token_window_violations"]
    return over


@dataclass(frozen=True)
class BreakerCost:
    """What a down provider received after the `threshold`-th failure in a row (when the shared breaker
    opens): one half-open `probes` per cooldown is the breaker's design; `in_flight` attempts arrived within
    `grace_s` of the opening (sent before any worker could have seen it); `late` ones arrived after that
    (workers that should have skipped the provider). Arrival times are the provider's."""

    probes: int
    in_flight: int
    late: int


def after_breaker_opened(
    log: list[dict[str, Any]],
    cooldown_s: float,
    *,
    grace_s: float = 1.5,
    threshold: int = 3,
    slack: float = 0.9,
) -> BreakerCost:
    def failed(q: dict[str, Any]) -> bool:
        return q["status"] >= 500 or q["status"] == 404 or bool(q.get("connection_error"))

    times = [q["ts"] for q in sorted(log, key=lambda q: q["ts"]) if failed(q)]
    if len(times) < threshold:
        return BreakerCost(0, 0, 0)
    opened = times[threshold - 1]
    probes = in_flight = late = 0
    next_probe = opened + cooldown_s * slack
    for t in times[threshold:]:
        if t >= next_probe:
            probes, next_probe = probes + 1, t + cooldown_s * slack
        elif t - opened <= grace_s:
            in_flight += 1
        else:
            late += 1
    return BreakerCost(probes, in_flight, late)


def _run(
    items: int, time_scale: float, concurrency: int, providers: tuple[SimProvider, ...], models: Any = None
) -> Any:
    from stepgraph.local.demo import DemoOptions, run_demo

    opts = DemoOptions(items=items, faults="none", time_scale=time_scale, concurrency=concurrency)
    opts.pool, opts.pool_providers, opts.models = True, providers, models
    return run_demo(opts, Console(file=io.StringIO()))


def run(
    items: int = 100, time_scale: float = 0.5, concurrency: int = 40, down_after_s: float = 30.0
) -> BenchResult:
    """Three batches over the same simulated pool: through the pool, through its first provider alone, and
    through the pool while one provider goes down mid-batch (connections dropped, then 503s)."""
    window = 60 * time_scale
    pooled = _run(items, time_scale, concurrency, BENCH_POOL)
    first = BENCH_POOL[0]
    alone = _run(items, time_scale, concurrency, BENCH_POOL, [first.deployment])
    down_name = BENCH_POOL[-1].name
    outage = {"down": [{"after_s": down_after_s, "for_s": 3600.0, "status": 503}]}
    faulty = tuple(replace(p, extra=outage) if p.name == down_name else p for p in BENCH_POOL)
    broken = _run(items, time_scale, concurrency, faulty)

    result = BenchResult(
        "pool",
        f"stepgraph bench pool --items {items} --time-scale {time_scale} --concurrency {concurrency} "
        f"--down-after-s {down_after_s:g}",
    )
    utilization, span = pooled_utilization(pooled, BENCH_POOL, window)
    total_rpm = sum(p.rpm or 0 for p in BENCH_POOL)
    result.add(
        "wall time through the pool",
        pooled.elapsed_s,
        "s",
        baseline=alone.elapsed_s,
        baseline_label=f"{first.name} alone",
    )
    share = (first.rpm or 0) / total_rpm
    result.add(
        "wall time ratio, pool / first provider alone",
        pooled.elapsed_s / alone.elapsed_s,
        "",
        goal=f"ideal {share:.2f} ({first.name}'s share of the pooled rpm)",
    )
    result.add("pooled utilization while items queue", utilization, "of the pooled limits", goal=">= 0.9")
    result.add("provider requests through the pool", pooled.requests, "requests")
    for p in BENCH_POOL:
        result.add(f"  of which {p.name}", len(pooled.provider_requests.get(p.name, [])), "requests")
    result.add(
        "provider 429s", 100 * pooled.rate_limited / max(1, pooled.requests), "% of requests", goal="<= 1"
    )
    violations = window_violations(pooled, BENCH_POOL, window) + window_violations(broken, faulty, window)
    violations += window_violations(alone, BENCH_POOL, window)
    result.add("requests or tokens over a provider's limit in any window (3 runs)", violations, "", goal="0")
    from stepgraph.runtime.deps import BREAKER_COOLDOWN_S

    cooldown = BREAKER_COOLDOWN_S * time_scale
    cost = after_breaker_opened(broken.provider_requests.get(down_name, []), cooldown)
    workers = min(concurrency, items)
    result.add(
        f"attempts on {down_name} after its breaker opened, beside one probe per cooldown, per worker",
        (cost.in_flight + cost.late) / workers,
        f"attempts ({cost.in_flight} in flight, {cost.late} later; {workers} items at once)",
        goal="<= 3",
    )
    result.add(f"half-open probes on {down_name} (one per {cooldown:g}-s cooldown)", cost.probes, "attempts")
    result.add("items failed (3 runs)", pooled.failed + alone.failed + broken.failed, "", goal="0")
    result.notes.append(
        f"{items} document_pipeline items (the example tickets, about 5 model calls each), {concurrency} at once, "
        f"time scale {time_scale:g} (a {window:g}-s minute), the simulator in its own process serving "
        + ", ".join(
            f"{p.name} ({', '.join(f'{k} {v:,}' for k, v in p.limits().items())})" for p in BENCH_POOL
        )
        + f"; pooled rpm {total_rpm}. Utilization is admitted requests over the pool's capacity (each provider's "
        f"tightest request, token or day limit; a token window holds the usage of the requests before the newest and "
        f"the newest one's prompt + max_tokens, as the provider counts them) from the first "
        f"request until {BUSY:.0%} of them were sent ({span:.0f} s). In the third run {down_name} answers 503 from "
        f"{down_after_s:g} s on; attempts after the breaker opened include its half-open probes."
    )
    return result


def cli(
    items: int = typer.Option(100, min=1, help="Items in each batch"),
    time_scale: float = typer.Option(0.5, min=0.01, max=1.0, help="A minute lasts 60 x this many seconds"),
    concurrency: int = typer.Option(40, min=1, max=40, help="Items at once"),
    down_after_s: float = typer.Option(30.0, min=0, help="When the third run's provider goes down (seconds)"),
) -> None:
    print_result(run(items, time_scale, concurrency, down_after_s))
