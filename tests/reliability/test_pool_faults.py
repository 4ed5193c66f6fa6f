"""The fault matrix for provider pools, over the local stack: the real ASL on moto, the real handlers,
DynamoDB Local, and a simulator serving several free providers at once.

Every row runs a small fan-out batch (4 model calls per item) through `pool:sim` with one provider fault and
checks: every item done, each analyst's note exactly once, one usage record per provider attempt, no
provider's window exceeded (requests or tokens), plus the row's own bound on what the fault may cost.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any

import pytest

from stepgraph.graphs import fanout
from stepgraph.local.bench.pool import after_breaker_opened
from stepgraph.local.pool import SimProvider, simulator_spec, stack_env
from stepgraph.local.simulator import SimulatorHandle, running_simulator
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.runtime.deps import BREAKER_COOLDOWN_S
from stepgraph.usage import layout
from tests.fixtures.aws import execute

SCALE = 0.05
ITEMS = 4
Start = Callable[..., SimulatorHandle]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {
        "STEPGRAPH_TIME_SCALE": str(SCALE),
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "STEPGRAPH_LIMIT_MARGIN": "0.05",
    }
    with local_stack(env=env) as st:
        yield st


def _clear_limiter_table(st: LocalStack) -> None:
    """Learned limits and breakers live in the limiter table: each row starts without an earlier row's."""
    ddb = st.dynamodb_client()
    for page in ddb.get_paginator("scan").paginate(TableName=st.limiter_table, ProjectionExpression="pk"):
        for item in page["Items"]:
            ddb.delete_item(TableName=st.limiter_table, Key={"pk": item["pk"]})


@pytest.fixture
def pool_of(stack: LocalStack) -> Iterator[Start]:
    """Start a simulated pool and point the stack's functions at it, for one row."""
    with ExitStack() as es:

        def start(*providers: SimProvider) -> SimulatorHandle:
            sim = es.enter_context(running_simulator(providers=simulator_spec(providers), time_scale=SCALE))
            _clear_limiter_table(stack)
            # The functions' workers get the pool's table, keys and limits (fresh workers, as on AWS).
            es.enter_context(stack.configured(**stack_env(sim, providers)))
            stack.invocations.clear()
            return sim

        yield start


def run(st: LocalStack, name: str, *, filler: str = "") -> dict[str, Any]:
    payload = {
        "graph": "fanout",
        "items": [{"text": f"{name} ticket {i}: the invoice total is wrong.{filler}"} for i in range(ITEMS)],
        "config": {"max_concurrency": ITEMS, "models": ["pool:sim"]},
    }
    desc = execute(st, payload, name, timeout_s=120)
    assert desc["status"] == "SUCCEEDED", desc
    return dict(json.loads(desc["output"]))


def requests_of(sim: SimulatorHandle, providers: tuple[SimProvider, ...]) -> dict[str, list[dict[str, Any]]]:
    return {p.name: sim.provider(p.name).requests() for p in providers}


def check(
    st: LocalStack, sim: SimulatorHandle, name: str, out: dict[str, Any], providers: tuple[SimProvider, ...]
) -> list[dict[str, Any]]:
    """The guarantees every row keeps; returns the usage records."""
    assert [i["status"] for i in out["items"]] == ["done"] * ITEMS, (out["items"], st.invocations[-5:])
    s3 = st.client("s3")
    for i in range(ITEMS):
        state = json.loads(s3.get_object(Bucket=st.bucket, Key=f"results/{name}/{i}.json")["Body"].read())[
            "state"
        ]
        assert sorted(n.split(":")[0] for n in state["notes"]) == sorted(fanout.ANALYSTS), state["notes"]
    records = list(layout.s3_records(s3, st.bucket, execution=name))
    sent = sum(len(log) for log in requests_of(sim, providers).values())
    assert len(records) == sent, (Counter((r["deployment"], r["status"]) for r in records), sent)
    for p in providers:
        account = sim.provider(p.name).stats()["accounts"]["default"]
        assert account["window_violations"] == 0 and account["token_window_violations"] == 0, (
            p.name,
            account,
        )
    assert not any(i.get("error") == "_TimedOut" for i in st.invocations), "a Lambda overran its timeout"
    return records


def test_a_provider_that_is_down_is_skipped_once_its_breaker_opens(stack: LocalStack, pool_of: Start) -> None:
    down = {"down": [{"for_s": 3600.0, "status": 503}]}
    providers = (
        SimProvider("nvidia", rpm=60, extra=down),  # no day cap: the router tries it first
        SimProvider("openrouter", rpm=40, rpd=10_000),
        SimProvider("groq", rpm=40, rpd=10_000, tpm=100_000),
    )
    sim = pool_of(*providers)
    records = check(stack, sim, "pool-down", run(stack, "pool-down"), providers)
    failed = [r for r in records if r["deployment"].startswith("nvidia:")]
    assert len(failed) >= 3 and all(r["http_status"] == 503 for r in failed)
    # Three failures in a row open the shared breaker; then every worker skips nvidia but for one half-open
    # probe per cooldown. The first wave (3 branches of each of the 4 items, sent at once) is in flight
    # before any failure is known: at most 3 per worker.
    log = sim.provider("nvidia").requests()
    cost = after_breaker_opened(log, BREAKER_COOLDOWN_S * SCALE)
    assert cost.in_flight + cost.late <= 3 * ITEMS, (cost, arrivals(log))


def test_a_provider_reporting_a_lower_limit_is_held_to_it(stack: LocalStack, pool_of: Start) -> None:
    # Configured (and in the stack's profile) 20 a minute; the provider enforces and reports 6.
    lowered = SimProvider("openrouter", rpm=20, rpd=10_000, extra={"reported_limits": {"rpm": 6}})
    # The other provider has less of its day left: the router sends to openrouter first.
    providers = (lowered, SimProvider("groq", rpm=10, rpd=500, tpm=100_000))
    sim = pool_of(*providers)
    records = check(stack, sim, "pool-lower", run(stack, "pool-lower"), providers)
    openrouter = [r for r in records if r["deployment"].startswith("openrouter:")]
    limited = [r for r in openrouter if r["http_status"] == 429]
    # Its first 429 teaches every worker the reported limit: a learned limit in the limiter table (and on
    # the records of the attempts admitted under it). Only calls already in flight then meet a 429.
    assert limited, Counter(r["http_status"] for r in openrouter)
    log = [q for q in sim.provider("openrouter").requests() if q["status"] == 429]
    # Counted, not timed: at most the first wave (every analyst call of every item in flight) meets it.
    assert len(log) <= len(fanout.ANALYSTS) * ITEMS, arrivals(log)
    learned = _item(stack, "openrouter:main#learned")
    assert learned and learned["caps"]["rpm"]["capacity"] <= 6, learned
    # Attempts admitted once every worker has read it (a record's ts is when the attempt ended).
    learned_at = datetime.fromisoformat(min(r["ts"] for r in limited).replace("Z", "+00:00")) + timedelta(
        seconds=1.5
    )
    later = [r for r in openrouter if datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) > learned_at]
    assert all("rpm=" in r["learned_limit"] for r in later if r["http_status"] != 429), later


def test_a_token_limited_provider_with_long_prompts_is_not_overrun(stack: LocalStack, pool_of: Start) -> None:
    # ~650-token prompts + 512 max_tokens against 3,000 tokens a minute: tokens bind long before requests.
    groq = SimProvider("groq", rpm=60, rpd=10_000, tpm=3000, tpd=1_000_000)
    providers = (groq, SimProvider("openrouter", rpm=20, rpd=10_000))
    sim = pool_of(*providers)
    records = check(stack, sim, "pool-tokens", run(stack, "pool-tokens", filler=" padding" * 320), providers)
    on_groq = [r for r in records if r["deployment"].startswith("groq:")]
    assert on_groq, Counter(r["deployment"] for r in records)
    assert sum(r["http_status"] == 429 for r in on_groq) <= 1
    account = sim.provider("groq").stats()["accounts"]["default"]
    assert 0 < account["max_tokens_in_window"] <= 3000


def test_a_delisted_model_retires_its_deployment_for_the_run(stack: LocalStack, pool_of: Start) -> None:
    providers = (
        SimProvider("nvidia", rpm=60),  # tried first: no day cap
        SimProvider("openrouter", rpm=40, rpd=10_000),
    )
    sim = pool_of(*providers)
    sim.provider("nvidia").delist("openai/gpt-oss-120b")
    records = check(stack, sim, "pool-delisted", run(stack, "pool-delisted"), providers)
    gone = [r for r in records if r["deployment"].startswith("nvidia:")]
    # The first 404 retires nvidia for the run in the shared breaker record: every worker skips it from then
    # on. Only the first wave (an item's three analysts, sent at once before any answer) can reach it: by the
    # time an item's synthesis calls, its own analysts' 404s or a read of the record have shown the retirement.
    # (Causal, not timed: a worker stalled by a loaded machine may send its first wave late, legitimately.)
    assert gone and all(r["http_status"] == 404 for r in gone)
    assert {r["node"] for r in gone} == {"analyst"}, Counter((r["node"], r["item_id"]) for r in gone)
    assert len(gone) <= len(fanout.ANALYSTS) * ITEMS, arrivals(sim.provider("nvidia").requests())


def _item(st: LocalStack, pk: str) -> dict[str, Any] | None:
    """A shared record of the limiter table (learned limits, breakers), as the product reads it."""
    from stepgraph.limiter.store import DynamoDBStore

    return DynamoDBStore(st.limiter_table, st.dynamodb_client()).get(pk)


def arrivals(log: list[dict[str, Any]]) -> str:
    """Arrival times relative to the first, for a failure message."""
    first = min((q["ts"] for q in log), default=0.0)
    return " ".join(f"{q['ts'] - first:.2f}" for q in sorted(log, key=lambda q: q["ts"]))
