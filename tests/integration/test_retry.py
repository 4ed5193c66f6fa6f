"""`stepgraph retry` on the real state machine (moto) and handlers: failed items of an inline and of a
distributed run finish after one retry, each continuing its own thread at the node that failed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stepgraph.cli import run
from stepgraph.local.stack import LocalStack, local_stack
from tests.fixtures import retry_graphs


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {
        "STEPGRAPH_GRAPHS": json.dumps(retry_graphs.GRAPHS),
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "OPENROUTER_API_KEY": "dev=sk-unused",  # this graph calls no model
        "OLLAMA_API_KEY": "dev=sk-unused",
    }
    with local_stack(use_dynamodb_local=False, env=env) as st:
        yield st


def ended(st: LocalStack, arn: str, timeout_s: float = 90) -> dict[str, Any]:
    sfn = st.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, arn
        time.sleep(0.2)
    return dict(desc)


def cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def start(st: LocalStack, name: str, items: list[Any], *, distributed: bool) -> str:
    payload: dict[str, Any] = {"graph": "flaky_tail", "config": {"max_concurrency": 4}}
    if distributed:
        key = f"items/{name}/items.json"
        st.client("s3").put_object(Bucket=st.bucket, Key=key, Body=json.dumps(items).encode())
        payload["items_s3"] = {"bucket": st.bucket, "key": key}
    else:
        payload["items"] = items
    sfn = st.client("stepfunctions")
    return str(
        sfn.start_execution(stateMachineArn=st.state_machine_arn, name=name, input=json.dumps(payload))[
            "executionArn"
        ]
    )


@pytest.mark.parametrize("distributed", [False, True], ids=["inline", "distributed"])
def test_one_retry_finishes_every_failed_item_where_it_stopped(
    stack: LocalStack, distributed: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    retry_graphs.reset()
    retry_graphs.FLAG.touch()
    kind = "dist" if distributed else "inline"
    items = [{"text": f"ok-{kind}-0"}, {"text": f"flaky-{kind}-1"}, {"text": f"flaky-{kind}-2"}]
    original = start(stack, f"orig-{kind}", items, distributed=distributed)
    assert ended(stack, original)["status"] == "SUCCEEDED"
    at = ["--endpoint-url", stack.endpoint_url]
    report = json.loads(cli(capfd, "status", original, *at)[1])
    assert report["items_done"] == 1 and len(report["failed_items"]) == 2

    retry_graphs.FLAG.unlink()  # the cause is fixed
    code, out, err = cli(capfd, "retry", original, *at)
    assert code == 0, err
    retry = out.strip()
    assert "retrying 2 item(s): 1, 2" in err
    desc = ended(stack, retry)
    assert desc["status"] == "SUCCEEDED"
    assert json.loads(desc["input"])["config"]["retry_of"] == original

    code, out, err = cli(capfd, "status", retry, *at)
    report = json.loads(out)
    assert code == 0, err
    assert report["items_done"] == 2 and report["failed_items"] == [] and report["retry_of"] == original
    # Each item continued its own thread: a and b ran once, c failed once and then ran again.
    for item in items[1:]:
        text = item["text"]
        assert [retry_graphs.runs(text, n) for n in "abc"] == [1, 1, 2], text
    s3 = stack.client("s3")
    name = retry.rsplit(":", 1)[-1]
    for item_id in ("1", "2"):
        body = json.loads(
            s3.get_object(Bucket=stack.bucket, Key=f"results/{name}/{item_id}.json")["Body"].read()
        )
        assert body["item_id"] == item_id and body["state"]["notes"] == ["a", "b", "c"]
    # The original says what was retried where.
    report = json.loads(cli(capfd, "status", original, *at)[1])
    assert [(r["retry_execution"], r["item_ids"]) for r in report["retried"]] == [(retry, ["1", "2"])]
    # Nothing is left to retry in the retry itself.
    code, out, err = cli(capfd, "retry", retry, *at)
    assert code == 0 and out == "" and "nothing to retry" in err


def test_retry_mistakes_are_one_line(stack: LocalStack, capfd: pytest.CaptureFixture[str]) -> None:
    retry_graphs.reset()
    done = start(stack, "all-done", [{"text": "ok-x"}], distributed=False)
    ended(stack, done)
    at = ["--endpoint-url", stack.endpoint_url]
    missing = done.rsplit(":", 1)[0] + ":no-such-run"
    rows = [
        (["retry", missing, *at], r"AWS DescribeExecution: ExecutionDoesNotExist.*check the execution ARN"),
        (["retry", done, "--items", "0,5", *at], r"--items: 5 is not an item of all-done \(its items are 0..0\)"),
        (["retry", done, "--config", '{"budget_usd": -1}', *at], r"input\.config\.budget_usd: Input should be greater than 0"),
    ]  # fmt: skip
    for argv, match in rows:
        code, _, err = cli(capfd, *argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert __import__("re").search(match, lines[0]), lines[0]
