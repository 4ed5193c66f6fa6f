"""The local stack's Lambda workers: a process per container, as Lambda runs them (no AWS needed)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from stepgraph.local.workers import FunctionConfig, FunctionPool

HANDLER = """
import os, signal, sys, time

COLD = time.time()


class Throttle(Exception):
    error_type = "Lambda.TooManyRequestsException"


def handler(event, context):
    action = event.get("do")
    if action == "env":
        return {"env": dict(os.environ), "pid": os.getpid()}
    if action == "sleep":
        started = time.time()
        time.sleep(event["s"])
        return {"pid": os.getpid(), "started": started, "ended": time.time()}
    if action == "raise":
        raise ValueError("item 3 has no text")
    if action == "typed":
        raise Throttle("slow down")
    if action == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "print":
        print("a line on stdout", flush=True)
        print("a line on stderr", file=sys.stderr, flush=True)
    if action == "remaining":
        return {"ms": context.get_remaining_time_in_millis(), "request_id": context.aws_request_id}
    return {"pid": os.getpid(), "cold": COLD}
"""


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[FunctionPool]:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text(HANDLER)
    config = FunctionConfig(
        "test-fn", str(tmp_path / "fn"), {"STEPGRAPH_BUCKET": "fn-bucket"}, timeout_s=30, concurrency=4
    )
    p = FunctionPool(config)
    yield p
    p.close()


def test_a_function_sees_its_own_environment_and_not_the_callers(
    pool: FunctionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLER_ONLY_SECRET", "must-not-travel")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-callers-own")
    before = dict(os.environ)
    env = pool.invoke({"do": "env"}).payload["env"]
    assert env["STEPGRAPH_BUCKET"] == "fn-bucket" and env["AWS_LAMBDA_FUNCTION_NAME"] == "test-fn"
    assert "CALLER_ONLY_SECRET" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert dict(os.environ) == before  # the caller's environment is never patched


def test_warm_workers_are_reused_and_busy_ones_make_a_cold_start(pool: FunctionPool) -> None:
    first, second = pool.invoke({}), pool.invoke({})
    assert first.cold and not second.cold
    assert first.payload == second.payload  # the same process, its module globals kept
    assert first.pid != os.getpid()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(pool.invoke({"do": "sleep", "s": 1.0})))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    pids = {r.payload["pid"] for r in results}
    assert len(pids) == 2 and first.pid in pids  # one warm worker, one new: two at once
    assert pool.cold_starts == 2


def test_concurrency_is_capped_per_function(pool: FunctionPool) -> None:
    pool = FunctionPool(replace(pool.config, concurrency=1))
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(pool.invoke({"do": "sleep", "s": 0.5})))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    a, b = sorted((r.payload for r in results), key=lambda p: p["started"])
    assert b["started"] >= a["ended"] and a["pid"] == b["pid"]  # one at a time, on one worker
    pool.close()


def test_an_overrun_is_killed_and_answered_as_lambda_does(pool: FunctionPool) -> None:
    warm = pool.invoke({})
    started = time.monotonic()
    late = pool.invoke({"do": "sleep", "s": 20}, timeout_s=1.0)
    assert time.monotonic() - started < 10
    assert (
        late.error_type == "Sandbox.Timedout"
        and "Task timed out after 1.00 seconds" in late.payload["errorMessage"]
    )
    with pytest.raises(ProcessLookupError):
        os.kill(warm.pid, 0)  # the worker is gone
    after = pool.invoke({})
    assert after.ok and after.cold and after.pid != warm.pid


def test_the_remaining_time_counts_down_from_the_timeout(pool: FunctionPool) -> None:
    out = pool.invoke({"do": "remaining"}, timeout_s=5.0).payload
    assert 3000 < out["ms"] <= 5000 and out["request_id"]


def test_a_killed_worker_is_a_runtime_exit_and_the_next_call_cold_starts(pool: FunctionPool) -> None:
    died = pool.invoke({"do": "die"})
    assert died.error_type == "Runtime.ExitError"
    assert "Runtime exited with error: signal: killed" in died.payload["errorMessage"]
    again = pool.invoke({})
    assert again.ok and again.cold and again.pid != died.pid


def test_a_crash_takes_down_its_own_worker_only(pool: FunctionPool) -> None:
    # Threads of one interpreter share its fate: a SIGKILL in one handler would end every invocation
    # and the caller. Here the neighbour finishes and the caller goes on.
    results = {}

    def call(name: str, event: dict[str, object]) -> None:
        results[name] = pool.invoke(event)

    threads = [
        threading.Thread(target=call, args=("slow", {"do": "sleep", "s": 1.5})),
        threading.Thread(target=call, args=("dies", {"do": "die"})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results["dies"].error_type == "Runtime.ExitError"
    assert results["slow"].ok and results["slow"].payload["pid"] != results["dies"].pid
    assert os.getpid() not in (results["slow"].pid, results["dies"].pid)


def test_handler_errors_come_back_with_lambdas_fields(pool: FunctionPool) -> None:
    bad = pool.invoke({"do": "raise"})
    assert bad.error_type == "ValueError" and bad.error_class == "ValueError"
    assert bad.payload["errorMessage"] == "item 3 has no text"
    assert any("handler.py" in line for line in bad.payload["stackTrace"])
    typed = pool.invoke({"do": "typed"})  # an error that names the error type the state machine matches
    assert typed.error_type == "Lambda.TooManyRequestsException" and typed.error_class == "Throttle"
    assert pool.invoke({}).pid == bad.pid  # an exception does not cost the container


def test_a_configuration_change_starts_new_workers_with_the_new_environment(pool: FunctionPool) -> None:
    old = pool.invoke({"do": "env"}).payload
    pool.configure(env={"STEPGRAPH_BUCKET": "other"})
    new = pool.invoke({"do": "env"}).payload
    assert new["env"]["STEPGRAPH_BUCKET"] == "other" and new["pid"] != old["pid"]


def test_a_workers_output_reaches_the_callers_stdout_and_stderr(
    pool: FunctionPool, capfd: pytest.CaptureFixture[str]
) -> None:
    assert pool.invoke({"do": "print"}).ok
    deadline = time.monotonic() + 5
    out = err = ""
    while time.monotonic() < deadline and not ("stdout" in out and "stderr" in err):
        time.sleep(0.05)
        o, e = capfd.readouterr()
        out, err = out + o, err + e
    assert "a line on stdout" in out and "a line on stderr" in err
