"""`stepgraph retry` and the per-run budget on the real state machine (moto) and handlers: failed items of an
inline and of a distributed run finish after one retry, each continuing its own thread at the node that
failed; parallel items under `config.budget_usd` never book more than it. One stack for the module."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stepgraph.cli import run
from stepgraph.limiter.run_guard import RunGuard
from stepgraph.local.simulator import DEV_KEY, running_simulator
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.usage import layout
from tests.fixtures import retry_graphs

PAID = "openrouter:openai/gpt-oss-120b"
SCALE = 0.01


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home = str(tmp_path_factory.mktemp("retry-graphs"))
    with (
        running_simulator(rpm=10_000, rpd=1_000_000, time_scale=SCALE) as sim,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setattr(retry_graphs, "HOME", Path(home))
        mp.setattr(retry_graphs, "FLAG", Path(home) / "fail")
        env = {
            "STEPGRAPH_RETRY_GRAPHS_HOME": home,
            "STEPGRAPH_GRAPHS": json.dumps(retry_graphs.GRAPHS),
            "STEPGRAPH_STEP_MARGIN_S": "1",
            "STEPGRAPH_TIME_SCALE": str(SCALE),
            "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
            "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
            "OPENROUTER_API_KEY": f"dev={DEV_KEY}",
            "OLLAMA_API_KEY": f"dev={DEV_KEY}",
        }
        with local_stack(env=env) as st:
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


def test_parallel_items_never_book_more_than_the_run_budget_and_a_retry_with_more_finishes_them(
    stack: LocalStack, capfd: pytest.CaptureFixture[str]
) -> None:
    # Each paid call reserves about $0.002 (its prompt and 4,096 completion tokens at the table's prices)
    # and costs far less: at $0.005 two calls fit at once, so most of the 12 parallel analysts are refused.
    budget = 0.005
    items = [{"text": f"Ticket {i}: the invoice is wrong."} for i in range(4)]
    payload = {"graph": "fanout", "config": {"models": [PAID], "budget_usd": budget, "max_concurrency": 4}}
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=stack.state_machine_arn,
        name="budgeted",
        input=json.dumps({**payload, "items": items}),
    )["executionArn"]
    out = json.loads(ended(stack, arn)["output"])
    failed = [i for i in out["items"] if i["status"] == "failed"]
    assert failed and {i["error"] for i in failed} == {"BudgetExceeded"}
    assert "run budget of $0.0050" in failed[0]["cause"]
    records = list(layout.s3_records(stack.client("s3"), stack.bucket, execution="budgeted"))
    spent = sum(r["cost_usd"] or 0 for r in records)
    assert 0 < spent <= budget
    # The run's counter holds what the replies cost: every reservation was reconciled or handed back.
    guard = RunGuard(stack.limiter_table, arn, "-", client=stack.dynamodb_client())
    assert guard.spent_usd() == pytest.approx(spent, abs=1e-6 * len(records) + 1e-9)

    code, out_text, err = cli(
        capfd, "retry", arn, "--config", '{"budget_usd": 1.0}', "--endpoint-url", stack.endpoint_url
    )
    assert code == 0, err
    retry = out_text.strip()
    desc = ended(stack, retry)
    retried = json.loads(desc["output"])["items"]
    assert [i["status"] for i in retried] == ["done"] * len(failed), retried
    assert json.loads(desc["input"])["config"]["budget_usd"] == 1.0
