"""Every README command with the mistakes a user makes: one line naming the culprit, exit 2, no traceback.

In-process (`stepgraph.cli.run`); the rows that need AWS share one local endpoint (`stepgraph local up`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from stepgraph.cli import run
from stepgraph.local.endpoint import Endpoint, local_endpoint

EXEC = "arn:aws:states:us-east-1:123456789012:execution:stepgraph-graph-fanout:nope"
SM = "arn:aws:states:us-east-1:123456789012:stateMachine:stepgraph-graph-fanout"
# moto's Step Functions interpreter logs each failed state at ERROR with the state's full repr.
INTERPRETER = logging.getLogger("moto.stepfunctions.parser.asl.component.eval_component")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    good, bad, empty = tmp_path / "items.jsonl", tmp_path / "bad.jsonl", tmp_path / "empty.jsonl"
    good.write_text('{"text": "a", "max_rounds": 1}\n')
    bad.write_text('{"text": "a"}\n{"text": \n')
    empty.write_text("\n\n")
    return {"good": good, "bad": bad, "empty": empty, "tmp": tmp_path}


def cli(capfd: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_line(code: int, err: str, match: str, expect: int = 2) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expect, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: ") and re.search(match, lines[0]), lines[0]


# (id, argv with {good} {bad} {empty} {tmp} {busy} {closed} placeholders, regex naming the culprit)
ROWS = [
    ("demo items-file missing", "demo --items-file {tmp}/nope.jsonl", r"items file .*nope\.jsonl: No such file"),
    ("demo items-file broken line", "demo --items-file {bad}", r"bad\.jsonl:2: not JSON"),
    ("demo items-file empty", "demo --items-file {empty}", r"empty\.jsonl: the file holds no items"),
    ("demo unknown graph", "demo --graph nope", r"--graph 'nope' is not a registered graph \(use one of document_pipeline, fanout, support_agent, triage_with_review\)"),
    ("demo out not writable", "demo --out /proc/x", r"--out /proc/x: cannot write there"),
    ("demo faults", "demo --faults lots", r"--faults 'lots' is not known"),
    ("demo items 0", "demo --items 0", r"Invalid value for '--items': Input should be greater than or equal to 1"),
    ("start items missing", "start " + SM + " --items {tmp}/nope.jsonl --bucket my-bucket", r"nope\.jsonl: No such file"),
    ("start items broken", "start " + SM + " --items {bad} --bucket my-bucket", r"bad\.jsonl:2: not JSON"),
    ("start empty batch", "start " + SM + " --items {empty} --bucket my-bucket", r"the file holds no items"),
    ("start config not JSON", "start " + SM + " --items {good} --bucket my-bucket --config {{x", r"--config is not JSON"),
    ("start config a list", "start " + SM + " --items {good} --bucket my-bucket --config [1]", r"--config must be a JSON object"),
    ("start config bad field", "start " + SM + " --items {good} --bucket my-bucket --config {{\"max_rounds\":0}}", r"input\.config\.max_rounds: Input should be greater"),
    ("start no bucket", "start " + SM + " --items {good}", r"--bucket is needed"),
    ("start bad bucket", "start " + SM + " --items {good} --bucket x", r"--bucket: 'x' is not an S3 bucket name"),
    ("start bad s3 items", "start " + SM + " --items s3://B/k.json", r"--items: 'B' is not an S3 bucket name"),
    ("start bad name", "start " + SM + " --items {good} --bucket my-bucket --name a/b", r"--name 'a/b' is not a valid execution name"),
    ("start nobody listens", "start " + SM + " --items {good} --bucket my-bucket --endpoint-url http://127.0.0.1:{closed}", r"cannot reach the AWS endpoint http://127\.0\.0\.1:\d+"),
    ("start no stack", "start NoSuchStack --items {good} --bucket my-bucket --endpoint-url http://127.0.0.1:{closed}", r"no stack 'NoSuchStack'"),
    ("status not an arn", "status not-an-arn", r"'not-an-arn' is not an execution ARN"),
    ("status nobody listens", f"status {EXEC} --endpoint-url http://127.0.0.1:{{closed}}", r"cannot reach the AWS endpoint"),
    ("retry not an arn", "retry run-1", r"'run-1' is not an execution ARN"),
    ("retry bad items", f"retry {EXEC} --items 3;7", r"--items '3;7': '3;7' is not an item id"),
    ("retry config not JSON", f"retry {EXEC} --config {{{{x", r"--config is not JSON"),
    ("retry bad name", f"retry {EXEC} --name a/b --endpoint-url http://127.0.0.1:{{closed}}", r"--name 'a/b' is not a valid execution name"),
    ("retry nobody listens", f"retry {EXEC} --endpoint-url http://127.0.0.1:{{closed}}", r"cannot reach the AWS endpoint"),
    ("plan items missing", "plan --items {tmp}/nope.jsonl --calls-per-item 4 --tokens-per-call 900", r"items file .*nope\.jsonl: No such file"),
    ("plan empty batch", "plan --items {empty} --calls-per-item 4 --tokens-per-call 900", r"empty\.jsonl: the file holds no items"),
    ("plan unknown graph", "plan --items {good} --graph nope", r"--graph 'nope' is not a registered graph"),
    ("plan calls alone", "plan --items {good} --calls-per-item 4", r"--calls-per-item and --tokens-per-call go together"),
    ("plan bad tokens", "plan --items {good} --calls-per-item 4 --tokens-per-call lots", r"--tokens-per-call 'lots' is not a token count"),
    ("plan format", "plan --items {good} --calls-per-item 4 --tokens-per-call 9 --format xml", r"--format 'xml' is not known"),
    ("plan bad config", "plan --items {good} --config {{\"budget_usd\":0}}", r"budget_usd: Input should be greater than 0"),
    ("plan unknown model", "plan --items {good} --config {{\"models\":[\"x:y\"]}}", r"--config\.models\[0\]: unknown pool or provider"),
    ("plan prices missing", "plan --items {good} --calls-per-item 4 --tokens-per-call 9 --prices {tmp}/p.json", r"--prices .*p\.json: No such file"),
    ("simulator port range", "simulator --port 99999", r"Invalid value for '--port'.*65535"),
    ("simulator busy port", "simulator --port {busy}", r"--port \d+: 127\.0\.0\.1:\d+ is in use"),
    ("simulator accounts missing", "simulator --accounts {tmp}/none.yaml", r"simulator accounts file .*none\.yaml not found"),
    ("simulator accounts bad YAML", "simulator --accounts {bad}", r"simulator accounts file .*bad\.jsonl: not valid YAML \(.*, line \d\)"),
    ("simulator header dialect", "simulator --port {closed} --header-dialect soap", r"--header-dialect: unknown header dialect 'soap'"),
    ("simulator reported limit", "simulator --port {closed} --reported-limit rph=3", r"--reported-limit 'rph=3': expected NAME=N"),
    ("simulator providers missing", "simulator --port {closed} --providers {tmp}/none.yaml", r"simulator providers file .*none\.yaml not found"),
    ("local up busy port", "local up --port {busy}", r"--port \d+: 127\.0\.0\.1:\d+ is in use"),
    ("report no source", "usage report", r"--source is required"),
    ("report source missing", "usage report --source {tmp}/none", r"usage source .*none is not a directory"),
    ("report unknown query", "usage report --source {tmp} -q nope", r"unknown query nope \(known: "),
    ("report csv of many", "usage report --source {tmp} --format csv", r"--format csv prints one query"),
    ("report plot format", "usage report --source {tmp} --plot {tmp}/u.gif", r"--plot .*u\.gif: unknown format '\.gif'"),
    ("report since", "usage report --source {tmp} --since yesterday", r"--since 'yesterday' is not a date"),
    ("report athena nothing there", "usage report --athena", r"cannot reach the AWS endpoint"),
    ("unknown command", "stat", r"No such command 'stat'"),
    ("unknown flag", "status " + EXEC + " --colour", r"No such option: --colour"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "match"), [pytest.param(r[1], r[2], id=r[0]) for r in ROWS])
def test_a_mistake_is_one_line_and_exit_2(
    argv: str, match: str, files: dict[str, Path], busy_port: int, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import stepgraph.local.demo as demo

    def no_stack(**_: Any) -> Any:  # every flag is checked before anything starts
        raise AssertionError("the local stack started")

    monkeypatch.setattr(demo, "local_stack", no_stack)
    monkeypatch.setattr(demo, "running_simulator", no_stack)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ATHENA", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("COLUMNS", "80")  # one line even where a terminal would wrap
    subs = {k: str(v) for k, v in files.items()} | {"busy": str(busy_port), "closed": str(free_port())}
    code, _, err = cli(capfd, *argv.format(**subs).split(" "))
    assert_one_line(code, err, match)


@pytest.mark.parametrize(
    ("unset", "match"),
    [
        (
            ("AWS_DEFAULT_REGION", "AWS_REGION"),
            r"no AWS region given \(pass --region or set AWS_DEFAULT_REGION\)",
        ),
        (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), r"no AWS credentials found"),
    ],
)
def test_no_region_or_no_credentials(
    unset: tuple[str, ...], match: str, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    for var in unset:
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(var, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup
    # An execution's ARN names its region: status and retry need no --region, only credentials.
    by_arn = [["status", EXEC], ["status", EXEC, "--wait"], ["retry", EXEC]] if "credentials" in match else []
    for argv in [*by_arn, ["start", SM, "--items", "s3://my-bucket/items/k.json"]]:
        code, _, err = cli(capfd, *argv)
        assert_one_line(code, err, match)


def test_status_and_retry_take_the_region_from_the_execution_arn(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in (
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(var, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for argv in (["status", EXEC], ["retry", EXEC], ["reviews", EXEC]):
        code, _, err = cli(capfd, *argv)
        assert_one_line(code, err, r"no AWS credentials found")  # not "no AWS region given"


def test_report_on_athena_without_the_workgroup(capfd: pytest.CaptureFixture[str]) -> None:
    from moto import mock_aws

    with mock_aws():  # a fresh account: the stack (and its workgroup) not deployed
        code, _, err = cli(capfd, "usage", "report", "--athena")
    assert_one_line(
        code,
        err,
        r"AWS StartQueryExecution: InvalidRequestException: WorkGroup does not exist \(check the Athena --workgroup and --database\)",
    )


def test_debug_shows_the_traceback_anywhere_on_the_line(capfd: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capfd, "status", "not-an-arn", "--debug")
    assert code == 2 and "Traceback" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("error: 'not-an-arn' is not an execution ARN")


def test_a_bug_is_one_line_exit_3(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import stepgraph.run_status as run_status

    def broken(*_: Any, **__: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(run_status, "status", broken)
    code, _, err = cli(capfd, "status", EXEC)
    assert_one_line(
        code,
        err,
        r"unexpected ZeroDivisionError: division by zero \(a bug in stepgraph; run again with --debug",
        3,
    )


# -- against one local endpoint ------------------------------------------------------------------
@pytest.fixture(scope="module")
def ep() -> Iterator[Endpoint]:
    with local_endpoint(port=free_port()) as endpoint:
        yield endpoint


def sfn(ep: Endpoint) -> Any:
    return boto3.client("stepfunctions", endpoint_url=ep.url, region_name="us-east-1")


def s3_objects(ep: Endpoint, prefix: str) -> dict[str, str]:
    s3 = boto3.client("s3", endpoint_url=ep.url, region_name="us-east-1")
    return {
        o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=ep.bucket, Prefix=prefix).get("Contents", [])
    }


def wait(ep: Endpoint, arn: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (desc := sfn(ep).describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, arn
        time.sleep(0.3)
    return dict(desc)


def test_endpoint_rows(ep: Endpoint, files: dict[str, Path], capfd: pytest.CaptureFixture[str]) -> None:
    at = ["--endpoint-url", ep.url]
    other_sm = SM.replace("stepgraph-graph-fanout", "no-such-machine")
    rows = [
        (["start", ep.state_machine_arn, "--items", files["good"], "--bucket", "no-such-bucket", *at], r"cannot upload the items to s3://no-such-bucket/items/.* \(NoSuchBucket\)"),
        (["start", other_sm, "--items", files["good"], "--bucket", ep.bucket, *at], r"AWS DescribeStateMachine: StateMachineDoesNotExist.*no-such-machine"),
        (["start", ep.state_machine_arn, "--items", "s3://stepgraph-data/items/none.json", *at], r"cannot read the items at s3://stepgraph-data/items/none\.json \((404|NoSuchKey)\)"),
        (["status", EXEC, *at], r"AWS DescribeExecution: ExecutionDoesNotExist.*:nope.*\(check the execution ARN"),
        (["start", ep.state_machine_arn, "--items", files["good"], "--bucket", ep.bucket, "--config", '{"max_concurrency": "many"}', *at], r"input\.config\.max_concurrency: Input should be a valid integer"),
        (["start", ep.state_machine_arn, "--items", files["empty"], "--bucket", ep.bucket, *at], r"the file holds no items"),
    ]  # fmt: skip
    for argv, match in rows:
        code, _, err = cli(capfd, *argv)
        assert_one_line(code, err, match)
    assert s3_objects(ep, "items/") == {}  # nothing uploaded by a start that failed its checks


def test_start_never_overwrites_a_name_in_use(
    ep: Endpoint, files: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    at = ["--endpoint-url", ep.url, "--bucket", ep.bucket]
    code, out, err = cli(
        capfd, "start", ep.state_machine_arn, "--items", files["good"], "--name", "june", *at
    )
    assert code == 0, err
    first = out.strip()
    before = s3_objects(ep, "items/june/")
    assert list(before) == ["items/june/items.json"]
    other = files["tmp"] / "other.jsonl"
    other.write_text('{"text": "b", "max_rounds": 1}\n{"text": "c", "max_rounds": 1}\n')
    code, _, err = cli(capfd, "start", ep.state_machine_arn, "--items", other, "--name", "june", *at)
    assert_one_line(
        code,
        err,
        r"--name june: an execution of that name exists already \(pick another name, or pass --force-new-name",
    )
    assert s3_objects(ep, "items/june/") == before  # the first run's items are as they were
    code, out, err = cli(
        capfd, "start", ep.state_machine_arn, "--items", other, "--name", "june", "--force-new-name", *at
    )
    assert code == 0, err
    second = out.strip()
    assert second != first and re.search(r":june-[0-9a-f]{12}$", second)
    assert s3_objects(ep, "items/june/") == before
    wait(ep, first)
    wait(ep, second)


def test_status_rejected_at_validation(ep: Endpoint, capfd: pytest.CaptureFixture[str]) -> None:
    arn = sfn(ep).start_execution(
        stateMachineArn=ep.state_machine_arn,
        name="rejected",
        input=json.dumps({"graph": "nope", "items": [1, 2]}),
    )["executionArn"]
    wait(ep, arn)
    code, out, err = cli(capfd, "status", arn, "--endpoint-url", ep.url)
    assert not INTERPRETER.isEnabledFor(logging.ERROR)  # its ERROR line (a state's repr) is not for users
    report = json.loads(out)
    assert code == 0 and "unaccounted" not in report and "items_done" not in report
    assert report["rejected_at_validation"].startswith("UnknownGraph: input.graph: unknown graph 'nope'")
    assert err.startswith("rejected at validation: UnknownGraph: input.graph: unknown graph 'nope'")
    code, _, err = cli(capfd, "status", arn, "--endpoint-url", ep.url, "--wait")
    assert code == 2 and err.splitlines()[-1].startswith("error: rejected at validation: UnknownGraph")


def test_an_empty_batch_started_with_boto3_is_rejected_too(
    ep: Endpoint, capfd: pytest.CaptureFixture[str]
) -> None:
    arn = sfn(ep).start_execution(
        stateMachineArn=ep.state_machine_arn, name="empty", input=json.dumps({"graph": "fanout", "items": []})
    )["executionArn"]
    wait(ep, arn)
    report = json.loads(cli(capfd, "status", arn, "--endpoint-url", ep.url)[1])
    assert (
        report["rejected_at_validation"]
        == "InvalidInput: input.items: the batch is empty (give at least one item)"
    )


def test_status_finds_the_data_bucket_and_lists_items(
    ep: Endpoint, files: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    items = [{"text": "a refund", "max_rounds": 1}, {"max_rounds": 1}]  # the second lacks text
    inline = sfn(ep).start_execution(
        stateMachineArn=ep.state_machine_arn,
        name="inline",
        input=json.dumps({"graph": "document_pipeline", "items": items}),
    )["executionArn"]
    all_failed = sfn(ep).start_execution(  # no result_ref in its output: the bucket comes from the definition
        stateMachineArn=ep.state_machine_arn,
        name="all-failed",
        input=json.dumps({"graph": "fanout", "items": [{}]}),
    )["executionArn"]
    path = files["tmp"] / "two.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    code, out, err = cli(
        capfd, "start", ep.state_machine_arn, "--items", path, "--bucket", ep.bucket, "--endpoint-url", ep.url
    )
    assert code == 0, err
    distributed = out.strip()
    for arn in (inline, distributed):
        assert wait(ep, arn)["status"] == "SUCCEEDED"
        # No --bucket: the bucket comes from the execution (result_ref, the definition, the items).
        code, out, err = cli(capfd, "status", arn, "--endpoint-url", ep.url, "--items")
        report = json.loads(out)
        assert code == 0, err
        assert report["items_done"] == 1 and report["provider_attempts"] >= 2 and "spend_usd" in report
        states = {str(i["item_id"]): i for i in report["items"]}
        assert states["0"]["status"] == "done" and states["1"]["status"] == "failed"
        assert (
            states["1"]["error"] == "MissingField" and "needs the item's field 'text'" in states["1"]["cause"]
        )
    wait(ep, all_failed)
    report = json.loads(cli(capfd, "status", all_failed, "--endpoint-url", ep.url)[1])
    assert (
        report["items_done"] == 0
        and report["provider_attempts"] == 0
        and report["failed_items"][0]["error"] == "MissingField"
    )
    # The Distributed Map's child executions, listed as on AWS.
    runs = sfn(ep).list_map_runs(executionArn=distributed)["mapRuns"]
    children = sfn(ep).list_executions(mapRunArn=runs[0]["mapRunArn"])["executions"]
    assert len(children) == 2 and {c["status"] for c in children} == {"SUCCEEDED"}
    child = sfn(ep).describe_execution(executionArn=children[0]["executionArn"])
    assert json.loads(child["input"])["item_id"] in (0, 1, "0", "1")


def test_demo_runs_exactly_the_file_and_names_failed_items(
    files: dict[str, Path], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = files["tmp"] / "demo.jsonl"
    # A plain string item is the text ({"input": value}); the object without text fails, named.
    path.write_text('"A customer asks for a refund of a double charge."\n{"max_rounds": 1}\n')
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli(
        capfd, "demo", "--items-file", path, "--faults", "none", "--out", files["tmp"] / "out"
    )
    assert code == 1, out + err  # the batch ran and an item failed
    assert "stepgraph demo: 2 items" in out and "1 of 2 items done" in out
    assert re.search(r"item 1: MissingField: graph document_pipeline needs the item's field 'text'", out), out
    assert "Traceback" not in out + err and "Exception=" not in out + err
    assert not INTERPRETER.isEnabledFor(logging.ERROR)  # no interpreter log lines (pytest would catch them)
