"""The fault matrix over the local stack: the real ASL on moto, the real handlers, the simulator, DynamoDB Local.

Every row runs a small fan-out batch (3 parallel analysts, then a synthesis: 4 model calls per item) with one
fault injected and checks the same guarantees: every item ends in the documented state, no node result is lost
or duplicated, there is exactly one usage record per provider attempt, the provider's window was never
exceeded, and spend stayed under the cap.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepgraph import resources
from stepgraph.graphs import fanout
from stepgraph.limiter.algorithm import DAY_S, seconds_to_next_utc_day
from stepgraph.local.simulator import DEV_KEY, SimulatorHandle, running_simulator
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.usage import layout
from tests.fixtures.aws import execute

SECOND_KEY = "sk-sim-second"
TIME_SCALE = 0.05  # a minute lasts 3 s, a UTC day 72 min
RUN_TIMEOUT_S = 90
PAID = "openrouter:openai/gpt-oss-120b"
FREE = "openrouter:openai/gpt-oss-120b:free"


@pytest.fixture(scope="module")
def rig() -> Iterator[tuple[LocalStack, SimulatorHandle]]:
    accounts = {
        "accounts": {"default": {"keys": {DEV_KEY: "first", SECOND_KEY: "second"}, "credits_usd": 1.0}}
    }
    with running_simulator(rpm=40, rpd=100_000, time_scale=TIME_SCALE, accounts=accounts) as sim:
        env = {
            "STEPGRAPH_TIME_SCALE": str(TIME_SCALE),
            "STEPGRAPH_STEP_MARGIN_S": "1",
            "STEPGRAPH_LIMIT_MARGIN": "0.05",
            "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
            "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
            "OPENROUTER_API_KEY": f"first={DEV_KEY},second={SECOND_KEY}",
            "OLLAMA_API_KEY": f"first={DEV_KEY}",
            "STEPGRAPH_LIMITS_OVERRIDES": json.dumps({"rpm": {"capacity": 40}, "rpd": {"capacity": 100_000}}),
        }
        with local_stack(env=env) as st:
            yield st, sim


def _clear_limiter(st: LocalStack) -> None:
    ddb, key = st.client("dynamodb"), resources.LIMITER_PARTITION_KEY
    for page in ddb.get_paginator("scan").paginate(TableName=st.limiter_table, ProjectionExpression=key):
        for item in page["Items"]:
            ddb.delete_item(TableName=st.limiter_table, Key={key: item[key]})


@pytest.fixture
def fresh(rig: tuple[LocalStack, SimulatorHandle]) -> Iterator[tuple[LocalStack, SimulatorHandle]]:
    st, sim = rig
    sim.reset()
    _clear_limiter(st)  # and on a fresh limiter: an earlier row may have spent a model's (scaled) day
    st.recycle()  # each row starts on fresh containers: no key retired by an earlier row
    st.hooks.clear()
    st.invocations.clear()
    yield st, sim
    st.hooks.clear()
    st.timeout_s = 900.0


def run(
    st: LocalStack, name: str, items: int = 3, config: dict[str, Any] | None = None, *, filler: str = ""
) -> dict[str, Any]:
    payload = {
        "graph": "fanout",
        "items": [{"text": f"{name} ticket {i}: the invoice total is wrong.{filler}"} for i in range(items)],
        "config": {"max_concurrency": 4, **(config or {})},
    }
    desc = execute(st, payload, name, timeout_s=RUN_TIMEOUT_S)
    assert desc["status"] == "SUCCEEDED", desc
    return json.loads(desc["output"])


def usage(st: LocalStack, name: str) -> list[dict[str, Any]]:
    return list(layout.s3_records(st.client("s3"), st.bucket, execution=name))


def results(st: LocalStack, name: str, items: int) -> list[dict[str, Any]]:
    s3 = st.client("s3")
    return [
        json.loads(s3.get_object(Bucket=st.bucket, Key=f"results/{name}/{i}.json")["Body"].read())["state"]
        for i in range(items)
    ]


def settled(
    st: LocalStack, sim: SimulatorHandle, name: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Usage records and simulator requests once both sides are written: a request the client gave up on is
    logged when the server finishes it, and a branch cancelled by a failing sibling records its attempt late."""
    deadline = time.monotonic() + 10
    while True:
        records, requests = usage(st, name), sim.requests()
        if len(records) == len(requests) or time.monotonic() > deadline:
            return records, requests
        time.sleep(0.2)


def check(
    st: LocalStack, sim: SimulatorHandle, name: str, out: dict[str, Any], *, items: int = 3
) -> list[dict[str, Any]]:
    """The guarantees every row keeps; returns the usage records for row-specific checks."""
    assert [i["status"] for i in out["items"]] == ["done"] * items, (out["items"], st.invocations)
    for state in results(st, name, items):  # each analyst's note exactly once: nothing lost, nothing doubled
        assert sorted(n.split(":")[0] for n in state["notes"]) == sorted(fanout.ANALYSTS), state["notes"]
        assert state["synthesis"]
    records, requests = settled(st, sim, name)
    # Every request the provider saw has its record; a connection that failed before reaching it (a loaded
    # machine's connect timeout) has a record and no request.
    unreached = sum(r["error_type"] == "APIConnectionError" for r in records)
    assert len(requests) <= len(records) <= len(requests) + unreached, (
        Counter((r["status"], r["error_type"]) for r in records),
        len(requests),
    )
    answered = {
        q["generation_id"]
        for q in requests
        if q["status"] == 200 and not q.get("stream_error") and not q.get("error_body")
    }
    ok = [r["generation_id"] for r in records if r["status"] == "ok"]
    assert len(ok) == len(set(ok)) and set(ok) <= answered
    # A reply the client stopped waiting for is the only answered request without an ok record.
    assert len(answered) - len(ok) == sum(r["status"] == "timeout" for r in records)
    assert sim.stats()["accounts"]["default"]["window_violations"] == 0
    assert not any(i.get("error_type") == "Sandbox.Timedout" for i in st.invocations), (
        "a Lambda overran its timeout"
    )
    return records


def test_429_storm(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    sim.queue_faults(*[{"status": 429, "retry_after_s": 0.5}] * 8)
    records = check(st, sim, "storm-429", run(st, "storm-429"))
    assert sum(r["http_status"] == 429 for r in records) == 8


def test_502_503_bursts(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    sim.queue_faults(*[{"status": s} for s in (502, 503, 502, 503, 502, 503)])
    records = check(st, sim, "burst-5xx", run(st, "burst-5xx"))
    assert (
        sorted(r["http_status"] for r in records if r["http_status"] in (502, 503)) == [502] * 3 + [503] * 3
    )


def test_429s_with_their_headers_only_in_the_body(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    sim.queue_faults(*[{"status": 429, "retry_after_s": 0.5, "body_headers_only": True}] * 6)
    records = check(st, sim, "body-429", run(st, "body-429"))
    assert sum(r["status"] == "rate_limited" for r in records) == 6
    limited = [q for q in sim.requests() if q["status"] == 429]
    assert len(limited) == 6


def test_429s_whose_reset_is_already_past_wait_the_floor_not_zero(
    fresh: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = fresh
    sim.queue_faults(*[{"status": 429, "past_reset": True}] * 4)
    records = check(st, sim, "past-reset", run(st, "past-reset"))
    assert sum(r["http_status"] == 429 for r in records) == 4
    # Each 429 cost one retry after the 1-s floor: no 0-s loop against a reset that already passed.
    assert len(sim.requests()) == 3 * 4 + 4


def test_a_200_with_an_error_body_is_retried(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    sim.queue_faults(*[{"status": 502, "error_body": True}] * 4)
    records = check(st, sim, "error-body", run(st, "error-body"))
    failed = [r for r in records if r["status"] == "error"]
    assert len(failed) == 4 and all(r["http_status"] == 200 for r in failed)
    assert all(r["error_type"] == "ProviderBodyError" for r in failed)


def test_a_context_overflow_in_the_real_wording_moves_to_the_larger_model(
    fresh: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = fresh
    # The table believes the small model takes the prompt; the provider answers 400 in its own words
    # ("This endpoint's maximum context length is 4096 tokens ...") and the next model serves.
    table = {
        "providers": {
            "openrouter": {
                "base_url": sim.base_url,
                "keys_env": "OPENROUTER_API_KEY",
                "limits_profile": "openrouter-free",
                "models": {
                    "sim/small-4k": {"free": True, "context_tokens": 131_072},
                    "openai/gpt-oss-120b:free": {"free": True},
                },
            }
        },
        "chain": ["openrouter:sim/small-4k", FREE],
    }
    with st.configured(STEPGRAPH_PROVIDERS=json.dumps(table)):
        records = check(st, sim, "overflow", run(st, "overflow", items=2, filler=" padding" * 2500), items=2)
    analysts = [r for r in records if r["node"] == "analyst"]
    refused = [r for r in analysts if r["model_requested"] == "sim/small-4k"]
    # Once per call, never retried on the same model (each its call's first attempt). A node that ran again
    # (throttled at the larger model's slot on a loaded machine) asks the small model again, first.
    assert len(refused) >= 2 * 3 and all(r["http_status"] == 400 and r["attempt"] == 1 for r in refused)
    served = [r for r in analysts if r["status"] == "ok"]
    assert len(served) == 2 * 3 and all(r["model_requested"] == "openai/gpt-oss-120b:free" for r in served)


def test_the_paid_fallback_serves_once_the_free_day_is_spent(
    fresh: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = fresh
    # An account of its own, so its UTC-day counter starts at 0 whatever earlier rows used.
    table = {
        "providers": {
            "openrouter": {
                "base_url": sim.base_url,
                "account": "day-spent",
                "keys_env": "OPENROUTER_API_KEY",
                "limits_profile": "openrouter-free",
                "models": {
                    "openai/gpt-oss-120b:free": {"free": True},
                    "openai/gpt-oss-120b": {
                        "usd_per_prompt_token": 0.1e-6,
                        "usd_per_completion_token": 0.5e-6,
                    },
                },
            }
        },
        "chain": [FREE, PAID],
    }
    overrides = json.dumps({"rpm": {"capacity": 40}, "rpd": {"capacity": 5}})
    _start_of_a_day_that_outlasts_the_run()
    with st.configured(STEPGRAPH_PROVIDERS=json.dumps(table), STEPGRAPH_LIMITS_OVERRIDES=overrides):
        records = check(st, sim, "day-spent", run(st, "day-spent"))
    free_ok = [r for r in records if r["model_requested"].endswith(":free") and r["status"] == "ok"]
    paid_ok = [r for r in records if r["model_requested"] == "openai/gpt-oss-120b" and r["status"] == "ok"]
    assert len(free_ok) == 5  # the free day, as our limiter counts it
    assert len(paid_ok) == 3 * 4 - 5 and all(r["fallback"] for r in paid_ok)
    assert not any(q["status"] == 429 for q in sim.requests())  # refused locally, never by the provider


def test_stream_errors_are_retried(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    table = {
        "providers": {
            "openrouter": {
                "base_url": sim.base_url,
                "keys_env": "OPENROUTER_API_KEY",
                "limits_profile": "openrouter-free",
                "models": {"openai/gpt-oss-120b:free": {"free": True, "stream": True}},
            }
        },
        "chain": [FREE],
    }
    sim.queue_faults(*[{"stream_error": True}] * 4)
    with st.configured(STEPGRAPH_PROVIDERS=json.dumps(table)):
        records = check(st, sim, "stream-errors", run(st, "stream-errors"))
    assert sum(r["status"] != "ok" for r in records) == 4
    assert all(q["stream"] for q in sim.requests())


def test_slow_response_past_the_step_budget_ends_the_step_in_time(
    fresh: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = fresh
    # The function's timeout; the step keeps 2 s for its checkpoint and usage writes. With a real kill
    # the timeout must leave a loaded machine room for a new container's first limiter and S3 writes
    # (seconds on DynamoDB Local under load), and the reply comes later than the whole step could wait.
    st.timeout_s = 10.0
    sim.queue_faults({"delay_ms": 15_000})
    with st.configured(STEPGRAPH_STEP_MARGIN_S="2"):
        records = check(st, sim, "slow", run(st, "slow", items=2), items=2)
    assert any(r["status"] == "timeout" for r in records), Counter(r["status"] for r in records)
    steps = [i for i in st.invocations if i["function"] == resources.GRAPH_STEP_FUNCTION]
    # The slow call's timeout is the step's budget, so that step ends itself, throttled or running.
    assert any(i.get("status") in ("throttled", "running") for i in steps[:-1]), steps
    # A step is killed only when the machine's own writes outlast the margin (a loaded DynamoDB Local);
    # Lambda answers Sandbox.Timedout and the state machine resumes the item from its checkpoint.
    assert all(i["error_type"] == "Sandbox.Timedout" for i in steps if not i["ok"]), steps


def _die_once_in_synthesis(marker: str) -> None:
    """In a worker: the first synthesis of ticket 1 gets its model reply (paid for, its usage record
    written), then the process is killed before the node's result is checkpointed."""
    original = fanout.synthesise

    def dies(state: Any, runtime: Any) -> Any:
        update = original(state, runtime)
        if "ticket 1" in state["notes"][0] + state.get("text", ""):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # once, whichever worker gets there
            except FileExistsError:
                return update
            os.kill(os.getpid(), signal.SIGKILL)
        return update

    fanout.synthesise = dies  # type: ignore[assignment]


def test_lambda_killed_mid_node_reruns_only_that_node(
    fresh: tuple[LocalStack, SimulatorHandle], tmp_path: Path
) -> None:
    st, sim = fresh
    marker = tmp_path / "killed"
    with st.configured(setup=functools.partial(_die_once_in_synthesis, str(marker))):
        records = check(st, sim, "killed", run(st, "killed"))
    assert marker.exists()
    died = [i for i in st.invocations if not i["ok"]]
    # A real kill, seen as Lambda shows it.
    assert [i["error_type"] for i in died] == ["Runtime.ExitError"], died
    assert "signal: killed" in died[0]["message"]
    per_item_node = Counter((r["item_id"], r["node"]) for r in records if r["status"] == "ok")
    assert per_item_node[("1", "synthesise")] == 2  # the killed node ran again
    assert per_item_node[("1", "analyst")] == 3  # the analysts' checkpointed results were not redone
    assert all(per_item_node[(str(i), "synthesise")] == 1 for i in (0, 2))


@pytest.mark.parametrize("code", [412, 409])
def test_s3_412_409_on_a_checkpoint_write_lose_nothing(
    fresh: tuple[LocalStack, SimulatorHandle], code: int
) -> None:
    st, sim = fresh
    failed: list[str] = []

    def conflict_once(method: str, path: str) -> tuple[int, bytes] | None:
        # moto stores the object before this hook answers, so these are "the write landed but the reply said
        # 412 / 409": the saver must see its own bytes and carry on (409 after a retry), losing nothing.
        if method == "PUT" and "/checkpoints/" in path and "/c/" in path and not failed:
            failed.append(path)
            body = b"<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
            if code == 409:
                body = b"<Error><Code>ConditionalRequestConflict</Code><Message>A conflicting operation is in progress</Message></Error>"
            return code, body
        return None

    st.response_hooks.append(conflict_once)
    try:
        check(st, sim, f"conflict-{code}", run(st, f"conflict-{code}"))
    finally:
        st.response_hooks.remove(conflict_once)
    assert failed
    assert all(i["ok"] for i in st.invocations), st.invocations


def test_duplicate_delivery_of_a_step_keeps_one_result(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    twins: list[threading.Thread] = []
    errors: list[BaseException] = []

    def deliver_twice(function: str, event: Any) -> None:
        if function.endswith("graph-step") and event.get("item_id") == 0 and not twins:

            def twin() -> None:
                try:
                    st.invoke(function, dict(event))  # on another worker, as a second delivery would run
                except Exception as exc:  # a losing twin may fail: Step Functions would retry it
                    errors.append(exc)

            twins.append(threading.Thread(target=twin))
            twins[0].start()

    st.hooks.append(deliver_twice)
    out = run(st, "twice")
    twins[0].join(30)
    records = check(st, sim, "twice", out)
    assert sum(r["item_id"] == "0" and r["node"] == "synthesise" for r in records) >= 1
    assert all(getattr(e, "error_type", None) in ("CheckpointConflict",) for e in errors), errors


def test_a_key_revoked_mid_run_hands_over_to_the_next_key(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    calls: list[int] = []

    def revoke_after_first_step(function: str, event: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            sim.revoke(DEV_KEY)

    st.hooks.append(revoke_after_first_step)
    try:
        records = check(st, sim, "revoked", run(st, "revoked"))
    finally:
        sim.state.accounts.accounts["default"].revoked.clear()
    assert any(r["http_status"] == 401 for r in records)
    assert {q["key_label"] for q in sim.requests() if q["status"] == 200} <= {"first", "second"}
    assert sim.requests()[-1]["key_label"] == "second"


def test_the_last_key_revoked_fails_items_fast_with_a_typed_error(
    fresh: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = fresh
    sim.revoke(DEV_KEY)
    sim.revoke(SECOND_KEY)
    try:
        out = run(st, "all-revoked", items=2)
    finally:
        sim.state.accounts.accounts["default"].revoked.clear()
    for item in out["items"]:
        assert item["status"] == "failed" and item["error"] == "ProviderFatal", item
        assert "openrouter" in item["cause"] and "401" in item["cause"]
    records, requests = settled(st, sim, "all-revoked")
    assert len(records) == len(requests)
    assert all(q["status"] == 401 for q in requests)
    assert len(requests) <= 2 * 3 * 2  # each analyst of each item tries each key once: no retries


def test_credits_exhausted_mid_run_turns_paid_models_off_and_free_ones_finish(
    fresh: tuple[LocalStack, SimulatorHandle],
) -> None:
    st, sim = fresh
    account = sim.state.accounts.accounts["default"]
    account.credits_usd = account.usage_usd + 0.00003  # two or three paid replies' worth
    try:
        records = check(st, sim, "credits", run(st, "credits", config={"models": [PAID, FREE]}))
    finally:
        account.credits_usd = 1.0
    assert any(r["http_status"] == 402 for r in records)
    paid_ok = [r for r in records if r["model_requested"] == "openai/gpt-oss-120b" and r["status"] == "ok"]
    assert sum(r["cost_usd"] or 0 for r in paid_ok) <= 0.00003
    assert any(r["model_requested"].endswith(":free") and r["status"] == "ok" for r in records)


def test_the_budget_cap_holds_under_parallel_items(fresh: tuple[LocalStack, SimulatorHandle]) -> None:
    st, sim = fresh
    # One worst-case reservation (~$0.002) fits beside a few calls' real spend (~$0.00002 each), so the
    # cap binds after a handful of the batch's 16 paid calls, however they interleave.
    cap = 0.0021
    with st.configured(STEPGRAPH_TOTAL_BUDGET_USD=str(cap)):
        out = run(st, "budget", items=4, config={"models": [PAID]})
    records = usage(st, "budget")
    assert len(records) == len(sim.requests())
    assert sum(r["cost_usd"] or 0 for r in records) <= cap
    failed = [i for i in out["items"] if i["status"] == "failed"]
    assert failed and all(i["error"] == "BudgetExceeded" for i in failed), out["items"]


def _start_of_a_day_that_outlasts_the_run() -> None:
    """Wait for the next scaled UTC day when the current one could end during the run: a new day refills
    the free quota, and the row counts what one day allows (a wait of at most 100 s, in about 1 run in 43)."""
    day_s = DAY_S * TIME_SCALE
    left = seconds_to_next_utc_day(time.time(), day_s)
    if left < RUN_TIMEOUT_S + 10:
        time.sleep(left + 0.5)
