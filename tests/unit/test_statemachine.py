"""The state machine definition as AWS reads it: names unique in the whole machine, every Lambda task
rides out throttling, Distributed Map children always end with a record, tolerance and ResultWriter."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from stepgraph import resources
from stepgraph.runtime.step import DAY_JITTER_S, throttled_wait_s

DEFINITION = json.loads(resources.statemachine_text())
LAMBDA_ARNS = ("${ValidateFunctionArn}", "${GraphStepFunctionArn}")


def state_maps(node: dict[str, Any]) -> Iterator[dict[str, dict[str, Any]]]:
    """Every `States` object: the machine's and each Map processor's."""
    yield node["States"]
    for state in node["States"].values():
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from state_maps(state[key])


def all_states() -> list[tuple[str, dict[str, Any], dict[str, dict[str, Any]]]]:
    return [(name, st, scope) for scope in state_maps(DEFINITION) for name, st in scope.items()]


def test_state_names_are_unique_in_the_whole_machine() -> None:
    # States Language: "MUST be unique within the scope of the whole state machine" (DUPLICATE_STATE_NAME).
    names = Counter(name for name, _, _ in all_states())
    assert [n for n, c in names.items() if c > 1] == []


def test_every_next_names_a_state_of_its_own_scope() -> None:
    for _, st, scope in all_states():
        targets = [st.get("Next"), st.get("Default")]
        targets += [c["Next"] for c in st.get("Catch", []) + st.get("Choices", [])]
        assert all(t in scope for t in targets if t), st


@pytest.mark.parametrize("arn", LAMBDA_ARNS)
def test_lambda_throttling_never_fails_an_item(arn: str) -> None:
    tasks = [(n, st, scope) for n, st, scope in all_states() if st.get("Resource") == arn]
    assert tasks
    for name, task, scope in tasks:
        (busy,) = [r for r in task["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        assert busy["ErrorEquals"] == ["Lambda.TooManyRequestsException"]  # its own, longer backoff
        assert busy["MaxDelaySeconds"] >= 300 and busy["JitterStrategy"] == "FULL"
        assert busy["MaxAttempts"] >= 10
        if arn == "${GraphStepFunctionArn}":
            # After the retries the item waits and calls again: it never reaches ItemFailed for it.
            (catch,) = [c for c in task["Catch"] if "Lambda.TooManyRequestsException" in c["ErrorEquals"]]
            wait = scope[catch["Next"]]
            assert wait["Type"] == "Wait" and wait["Next"] == name and wait["Seconds"] >= 60
            assert task["Catch"].index(catch) < len(task["Catch"]) - 1  # before States.ALL


def test_distributed_map_tolerates_failures_from_config_and_writes_its_results_to_s3() -> None:
    dist = DEFINITION["States"]["DistributedMap"]
    assert dist["ToleratedFailurePercentagePath"] == "$.config.tolerated_failure_percentage"
    assert dist["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert dist["ResultWriter"]["Parameters"] == {
        "Bucket": "${DataBucketName}",
        "Prefix": resources.PREFIX_MAP_RUNS.rstrip("/"),
    }


def test_every_distributed_child_error_ends_in_a_failure_record() -> None:
    states = DEFINITION["States"]["DistributedMap"]["ItemProcessor"]["States"]
    for name, st in states.items():
        if st["Type"] == "Task":
            assert st["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        if st["Type"] == "Choice":
            # A missing or non-string status goes to the record, not to a States.Runtime error.
            first = st["Choices"][0]
            assert first == {"Not": {"Variable": "$.step.status", "IsString": True}, "Next": first["Next"]}
            assert states[first["Next"]]["Next"] == states[st["Default"]]["Next"] == "DistRecordFailure"
    ends = {n for n, st in states.items() if st.get("End")}
    assert ends == {"DistItemDone", "DistRecordFailure", "DistRecordLost"}
    # The done child's output needs no result_ref (its absence would be a runtime error in a Pass).
    assert "result_ref.$" not in states["DistItemDone"]["Parameters"]


def test_long_waits_to_the_next_day_are_jittered_short_ones_are_not() -> None:
    rng = random.Random(1)
    waits = {throttled_wait_s(10_000, rng=rng) for _ in range(50)}
    assert min(waits) >= 10_000 and max(waits) <= 10_000 + DAY_JITTER_S + 1 and len(waits) > 10
    assert {throttled_wait_s(20.2, rng=rng) for _ in range(20)} == {21}
    assert throttled_wait_s(0.0) == 1
    # Scaled locally: a day of 8.64 s gets at most 0.03 s of jitter.
    assert throttled_wait_s(8.0, time_scale=1e-4, rng=rng) in (8, 9)


def test_a_review_parks_on_a_callback_task_with_the_runs_deadline() -> None:
    parks = [(n, st, scope) for n, st, scope in all_states() if n.endswith("ParkForReview")]
    assert sorted(n for n, _, _ in parks) == ["DistParkForReview", "ParkForReview"]
    for _, park, scope in parks:
        assert park["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
        assert park["Parameters"]["Payload"]["park"]["task_token.$"] == "$$.Task.Token"
        assert park["TimeoutSecondsPath"] == "$.config.review_timeout_s"
        route = scope[park["Next"]]  # the answer goes back to graph-step, which resumes the graph
        assert route["Resource"] == "${GraphStepFunctionArn}"
        catches = {e: c["Next"] for c in park["Catch"] for e in c["ErrorEquals"]}
        # An unanswered review fails only its item, as ReviewTimedOut.
        timed_out = scope[catches["States.Timeout"]]
        assert timed_out["Parameters"]["Error"] == "ReviewTimedOut"
        assert scope[timed_out["Next"]]["Type"] == "Pass" and timed_out["Next"].endswith("ItemFailed")
        # Lambda throttling through every retry waits and calls graph-step again (it parks again).
        wait = scope[catches["Lambda.TooManyRequestsException"]]
        assert wait["Type"] == "Wait" and wait["Next"] == park["Next"]
        assert [c["ErrorEquals"] for c in park["Catch"]][-1] == ["States.ALL"]
