"""`stepgraph reviews` / `stepgraph resume` / `stepgraph status` against the local endpoint, with the example
graph triage_with_review (classify through the simulator, then a person approves unsure labels)."""

from __future__ import annotations

import contextlib
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

from stepgraph.cli import run
from stepgraph.local.endpoint import local_endpoint
from tests.integration.test_local_endpoint import free_port

ITEMS = [
    {"text": "sim-reply: billing 0.95"},  # confident: no review
    {"text": "I was charged twice.\nsim-reply: billing 0.4"},
    {"text": "The app crashes on start.\nsim-reply: bug 0.3"},
    {"text": "Cannot log in.\nsim-reply: account 0.5"},
]


@dataclass
class Result:
    exit_code: int
    stdout: str
    output: str


def cli(*args: str) -> Result:
    """Run a command through the CLI's error boundary (a user's mistake: one line, exit 2)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(list(args))
    return Result(code, out.getvalue(), out.getvalue() + err.getvalue())


def test_list_and_answer_reviews_from_the_cli() -> None:
    with local_endpoint(port=free_port()) as ep:
        sfn = boto3.client("stepfunctions", endpoint_url=ep.url, region_name="us-east-1")
        payload = {"graph": "triage_with_review", "items": ITEMS, "config": {"max_concurrency": 4}}
        arn = sfn.start_execution(
            stateMachineArn=ep.state_machine_arn, name="triage", input=json.dumps(payload)
        )["executionArn"]
        ep_args = ("--endpoint-url", ep.url)
        deadline = time.monotonic() + 90
        while True:
            res = cli("reviews", arn, "--json", *ep_args)
            assert res.exit_code == 0, res.output
            rows = json.loads(res.stdout)
            if len(rows) == 3:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.5)
        assert sorted(r["item_id"] for r in rows) == ["1", "2", "3"]
        assert all(r["nodes"] == ["review"] and r["waiting_since"] for r in rows)
        assert {r["payloads"][0]["label"] for r in rows} == {"billing", "bug", "account"}
        table = cli("reviews", arn, *ep_args)
        assert table.exit_code == 0 and "review" in table.stdout and "waiting since" in table.stdout
        status = json.loads(cli("status", arn, "--bucket", ep.bucket, *ep_args).stdout)
        assert status["items_in_review"] == 3 and status["longest_review_wait_s"] >= 0

        # One answered alone with an edit, the others all at once.
        res = cli("resume", arn, "2", "--value", '{"action": "edit", "label": "other"}', *ep_args)
        assert res.exit_code == 0, res.output
        res = cli("resume", arn, "--all", "--value", '{"action": "approve"}', *ep_args)
        assert res.exit_code == 0 and res.stdout.count("answered") == 2, res.output

        # Not waiting any more / never waiting / bad input: one line, exit 2.
        for args, message in [
            (("resume", arn, "2", "--value", '"again"'), "already answered"),
            (("resume", arn, "0", "--value", '"x"'), "item 0 of triage has no review"),
            (("resume", arn, "9", "--value", '"x"'), "item 9 of triage has no review"),
            (("resume", arn, "1", "--value", "{nope"), "--value is not JSON"),
            (("resume", arn, "1"), "exactly one of --value JSON or --file FILE"),
        ]:
            res = cli(*args, *ep_args)
            assert res.exit_code == 2 and message in res.output, (args, res.output)
            assert "Traceback" not in res.output

        while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            assert time.monotonic() < deadline + 60
            time.sleep(0.5)
        out = json.loads(desc["output"])
        s3 = boto3.client("s3", endpoint_url=ep.url, region_name="us-east-1")
        bodies = {}
        for item in out["items"]:
            body = s3.get_object(Bucket=item["result_ref"]["bucket"], Key=item["result_ref"]["key"])["Body"]
            bodies[str(item["item_id"])] = json.loads(body.read())
        finals = {k: v["state"] for k, v in bodies.items()}
        # Time in review is kept with each reviewed item only.
        assert "review" not in bodies["0"] and all(bodies[i]["review"]["rounds"] == 1 for i in "123")
        assert finals["0"]["final_label"] == "billing" and "review" not in finals["0"]
        assert (
            finals["2"]["review"] == {"action": "edit", "label": "other"}
            and finals["2"]["final_label"] == "other"
        )
        assert finals["1"]["review"] == {"action": "approve"} and finals["1"]["final_label"] == "billing"
        assert finals["3"]["final_label"] == "account"
        res = cli("reviews", arn, *ep_args)
        assert "no items waiting for a review (the execution has ended: SUCCEEDED)" in res.stdout
        # After the end: an answered item still says so; --all finds the execution over.
        res = cli("resume", arn, "1", "--value", '"late"', *ep_args)
        assert res.exit_code == 2 and "already answered" in res.output, res.output
        res = cli("resume", arn, "--all", "--value", '"late"', *ep_args)
        assert res.exit_code == 2 and "execution triage has ended (SUCCEEDED)" in res.output, res.output
        unknown = arn.rsplit(":", 1)[0] + ":nope"
        res = cli("reviews", unknown, *ep_args)
        assert res.exit_code == 2 and "ExecutionDoesNotExist" in res.output, res.output


def test_demo_auto_review_ends_by_itself(tmp_path: Path) -> None:
    from rich.console import Console

    from stepgraph.local.demo import DemoOptions, run_demo

    opts = DemoOptions(
        items=3, graph="triage_with_review", faults="none", out_dir=tmp_path, auto_review="approve"
    )
    console = Console(record=True, width=200)
    result = run_demo(opts, console=console)
    assert result.failed == 0
    assert "reviews answered 'approve' automatically: 3" in console.export_text()
    states = [json.loads(p.read_text())["state"] for p in tmp_path.glob("**/results/*/*.json")]
    assert len(states) == 3 and all(s["review"] == {"action": "approve"} for s in states)
