"""Pools on DynamoDB Local: learned limits and circuit breakers shared by separate workers (their own
clients and objects), the run counters per deployment, and what `stepgraph status` shows of them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from stepgraph.limiter import DynamoDBRateLimiter, Limit
from stepgraph.limiter.breaker import CircuitBreaker
from stepgraph.limiter.store import DynamoDBStore
from stepgraph.pool_status import deployment_status
from stepgraph.progress import RunCounters
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.pool import Picked, Route, pick
from stepgraph.providers.table import ModelSpec
from stepgraph.usage.record import UsageRecord
from tests.fixtures.dynamodb_local import ddb_client, table_clock

RUN = "arn:aws:states:us-east-1:123456789012:execution:sm:run-1"


def test_a_learned_limit_and_an_open_breaker_reach_every_worker(limiter_table: tuple[str, str]) -> None:
    endpoint, table = limiter_table
    clock = table_clock()

    def limiter() -> DynamoDBRateLimiter:
        return DynamoDBRateLimiter(
            table,
            "groq:main",
            [Limit("rpm", 30, 60), Limit("tpm", 8000, 60, unit="tokens")],
            client=ddb_client(endpoint),
            clock=clock,
            learned_refresh_s=0,
        )

    def breaker() -> CircuitBreaker:
        store = DynamoDBStore(table, ddb_client(endpoint))
        return CircuitBreaker(lambda: store, "down:main:m", clock, threshold=3, cooldown_s=30, refresh_s=0)

    first, second = limiter(), limiter()
    assert first.learned.lower("tpm", 6000, ceiling=8000, reason="x-ratelimit-limit-tokens 6000")
    second.try_acquire({"tpm": 10})
    assert second.capacity("tpm") == 6000 and second.capacity("rpm") == 30
    with ThreadPoolExecutor(3) as pool:  # three workers fail at once: their failures add up and open it
        list(pool.map(lambda _: breaker().record_failure(), range(3)))
    assert breaker().status() == "open" and not breaker().allow()
    clock.advance(31)
    probes = [breaker().allow() for _ in range(3)]
    assert probes.count(True) == 1  # one half-open probe among the workers


def test_the_pool_skips_an_open_deployment_without_a_write_for_it(limiter_table: tuple[str, str]) -> None:
    endpoint, table = limiter_table
    clock = table_clock()
    store = DynamoDBStore(table, ddb_client(endpoint))
    down = CircuitBreaker(lambda: store, "down:main:m", clock, threshold=1, cooldown_s=30, refresh_s=0)
    down.record_failure()

    def route(name: str, breaker: CircuitBreaker | None) -> Route:
        lim = DynamoDBRateLimiter(
            table, f"{name}:main", [Limit("rpm", 30, 60)], client=ddb_client(endpoint), clock=clock
        )
        return Route(
            name,
            "m",
            ModelSpec(free=True),
            KeyRing(name, []),
            lambda k: None,
            lim,
            pool="pool:p",
            breaker=breaker,
        )  # type: ignore[arg-type,return-value]

    routes = [route("down", down), route("up", None)]
    chosen = pick(routes, now=clock.now(), costs=lambda r: 1, horizon=lambda r: 1.0, not_before={})
    assert isinstance(chosen, Picked) and chosen.route.provider == "up"
    assert store.get("down:main#rpm") is None  # nothing was asked of the open deployment


def test_status_shows_each_deployments_progress_learned_limit_and_breaker(
    limiter_table: tuple[str, str],
) -> None:
    endpoint, table = limiter_table
    client = ddb_client(endpoint)
    counters = RunCounters(table, RUN, client=client)
    for dep, status, tokens in [
        ("groq:openai/gpt-oss-120b", "ok", 100),
        ("groq:openai/gpt-oss-120b", "rate_limited", 0),
        ("cerebras:gpt-oss-120b", "ok", 50),
    ]:
        counters.attempt(
            UsageRecord(
                ts="2026-03-01T10:00:00Z", deployment=dep, account="main", status=status, total_tokens=tokens
            )
        )
    clock = table_clock()
    lim = DynamoDBRateLimiter(
        table, "groq:main", [Limit("tpm", 8000, 60, unit="tokens")], client=client, clock=clock
    )
    lim.learned.lower("tpm", 6000, ceiling=8000, reason="reported")
    store = DynamoDBStore(table, client)
    CircuitBreaker(lambda: store, "cerebras:main:gpt-oss-120b", clock, threshold=1).record_failure()
    run = counters.read()
    assert run.attempts == 3
    shown = deployment_status(client, table, run.deployments, run_id=RUN, clock=clock)
    groq = shown["groq:main:openai/gpt-oss-120b"]
    assert (groq["attempts"], groq["ok"], groq["tokens"]) == (2, 1, 100)
    assert groq["learned_limits"] == {"tpm": 6000} and "breaker" not in groq
    assert shown["cerebras:main:gpt-oss-120b"]["breaker"].startswith("open for")
