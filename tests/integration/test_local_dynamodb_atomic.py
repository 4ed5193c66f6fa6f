"""The local stack's DynamoDB applies each conditional write atomically, as DynamoDB does: several callers
creating one limiter counter at once (a fanout's parallel calls at the start of a day) each count once.
DynamoDB Local, an independent implementation, is held to the same check."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from stepgraph.limiter.algorithm import CountOp
from stepgraph.limiter.store import DynamoDBStore
from stepgraph.limiter.table import ensure_limiter_table
from stepgraph.local.stack import moto_server
from tests.fixtures.dynamodb_local import ddb_client

CALLERS = 3
TRIALS = 200  # moto's own server lost an update in half of these (the switch interval below)


@pytest.fixture(scope="module")
def local_stack_dynamodb() -> Iterator[str]:
    with moto_server() as (url, _hooks):
        yield url


@pytest.fixture(params=["local stack (moto)", "DynamoDB Local"])
def endpoint(request: pytest.FixtureRequest) -> str:
    if request.param == "DynamoDB Local":
        return str(request.getfixturevalue("dynamodb_local"))
    return str(request.getfixturevalue("local_stack_dynamodb"))


def at_once(stores: list[DynamoDBStore], pk: str) -> int:
    """Every store takes one unit of a new counter at the same moment; how many were granted."""
    granted: list[bool] = []
    start = threading.Barrier(len(stores))

    def take(store: DynamoDBStore) -> None:
        start.wait()
        granted.append(store.apply(CountOp(pk, 0, inc=1, cap=len(stores) + 1))[0])

    threads = [threading.Thread(target=take, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(granted)


@pytest.fixture
def threads_switch_often() -> Iterator[None]:
    """Switch threads every microsecond, as a loaded machine preempts them: an update that is read, checked
    and written in steps is then interleaved in most tries, not one in a few hundred."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("threads_switch_often")
def test_concurrent_conditional_adds_creating_one_counter_each_count_once(endpoint: str) -> None:
    table = f"atomic-{uuid.uuid4().hex[:8]}"
    ensure_limiter_table(ddb_client(endpoint), table)
    stores = [DynamoDBStore(table, ddb_client(endpoint)) for _ in range(CALLERS)]
    lost = []
    for trial in range(TRIALS):
        pk = f"groq:main#rpd#d{trial}"
        granted = at_once(stores, pk)
        count = int((stores[0].get(pk) or {}).get("count", 0))
        if count != granted or granted != CALLERS:
            lost.append((trial, granted, count))
    assert lost == [], f"{len(lost)} of {TRIALS} tries lost an update (trial, granted, counted): {lost[:5]}"
