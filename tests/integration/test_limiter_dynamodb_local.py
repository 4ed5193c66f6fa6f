"""The limiter and budget guard on DynamoDB Local, hammered by several OS processes."""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier

import pytest
from botocore.exceptions import ClientError

from stepgraph.limiter import BudgetExceeded, BudgetGuard, DynamoDBRateLimiter, Limit, LimiterUnavailable
from stepgraph.limiter.algorithm import IdleOp
from stepgraph.limiter.store import DynamoDBStore
from tests.fixtures.dynamodb_local import ddb_client

CAPACITY, WINDOW = 10, 2.0


def _worker(endpoint: str, table: str, key: str, seconds: float, ready: Barrier, out: mp.Queue) -> None:
    limiter = DynamoDBRateLimiter(
        table, key, [Limit("r", CAPACITY, WINDOW)], client=ddb_client(endpoint), max_wait_s=0.5
    )
    sends = []
    # Start together once every process has imported and built its limiter: spawn start-up time varies
    # with machine load and must not eat into the measured window.
    ready.wait(timeout=120)
    until = time.time() + seconds
    while time.time() < until:
        grant = limiter.try_acquire()
        if grant.granted:
            time.sleep(grant.wait_s)
            sends.append(grant.send_at)  # the reserved slot; a late sleeper only sends later
        else:
            time.sleep(min(grant.wait_s, 0.2))
    out.put(sends)


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_processes_never_exceed_the_window_and_use_the_capacity(limiter_table: tuple[str, str]) -> None:
    endpoint, table = limiter_table
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    ready = ctx.Barrier(6)
    procs = [ctx.Process(target=_worker, args=(endpoint, table, "shared", 6.0, ready, out)) for _ in range(6)]
    for p in procs:
        p.start()
    sends = [t for _ in procs for t in out.get(timeout=180)]
    for p in procs:
        p.join(timeout=30)
    assert sends, "no grants at all"
    assert max_in_window(sends, WINDOW - 1e-6) <= CAPACITY
    span = max(sends) - min(sends)
    utilization = (len(sends) - 1) / (span * CAPACITY / WINDOW)
    assert utilization >= 0.8, f"utilization {utilization:.2f}"


def test_a_second_key_is_unaffected(limiter_table: tuple[str, str]) -> None:
    endpoint, table = limiter_table
    busy = DynamoDBRateLimiter(table, "busy", [Limit("r", 2, 60)], client=ddb_client(endpoint), max_wait_s=0)
    calm = DynamoDBRateLimiter(table, "calm", [Limit("r", 2, 60)], client=ddb_client(endpoint), max_wait_s=0)
    assert busy.try_acquire().granted
    assert not busy.try_acquire().granted
    assert calm.try_acquire().granted


def test_multi_dimension_grant_is_all_or_nothing(limiter_table: tuple[str, str]) -> None:
    endpoint, table = limiter_table
    limits = [Limit("rpm", 100, 60), Limit("rpd", 2, 86_400, "utc_day"), Limit("c", 5, 60, "concurrency")]
    lim = DynamoDBRateLimiter(table, "multi", limits, client=ddb_client(endpoint), max_wait_s=60)
    grants = [lim.try_acquire() for _ in range(3)]
    assert [g.granted for g in grants] == [True, True, False]
    assert grants[2].refused_by == "rpd"
    store = DynamoDBStore(table, ddb_client(endpoint))
    assert len(store.get("multi#c")["leases"]) == 2  # the refusal took no lease
    lim.release(grants[0])
    assert len(store.get("multi#c")["leases"]) == 1


def test_budget_cap_holds_under_concurrency(limiter_table: tuple[str, str]) -> None:
    endpoint, table = limiter_table

    def spend(_: int) -> bool:
        guard = BudgetGuard(table, "acct", daily_cap_usd=1.0, total_cap_usd=5.0, client=ddb_client(endpoint))
        try:
            res = guard.reserve(0.07)
        except BudgetExceeded:
            return False
        guard.reconcile(res, 0.05)
        return True

    with ThreadPoolExecutor(12) as pool:
        ok = sum(pool.map(spend, range(60)))
    guard = BudgetGuard(table, "acct", daily_cap_usd=1.0, total_cap_usd=5.0, client=ddb_client(endpoint))
    assert guard.spent_today_usd() <= 1.0
    assert guard.spent_today_usd() == pytest.approx(ok * 0.05)
    assert ok >= 14  # 1.0 / 0.07 reservations fit at least, more as refunds come back
    with pytest.raises(BudgetExceeded, match="daily budget of \\$1.0000"):
        guard.reserve(1.0)


class _Throttling:
    def __init__(self) -> None:
        self.calls = 0

    def update_item(self, **_: object) -> None:
        self.calls += 1
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")


def test_dynamodb_errors_fail_closed_after_bounded_retries() -> None:
    client = _Throttling()
    store = DynamoDBStore("t", client, max_attempts=4, base_delay_s=0.001)
    with pytest.raises(LimiterUnavailable, match="nothing was granted"):
        store.apply(IdleOp("k", ttl=1, now=1.0, inc=1.0))
    assert client.calls == 4
