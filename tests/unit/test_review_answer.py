"""Answering a review against in-memory S3 and Step Functions: the claim, the token, and what the record
says when the token is not delivered (a failed connection, a timed-out task, an ended execution)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from stepgraph.review.answer import NotWaiting, Reviews
from stepgraph.review.store import ANSWERED, TIMED_OUT, WAITING, ReviewStore, review_key

EXEC = "arn:aws:states:us-east-1:123456789012:execution:sm:run1"
BUCKET = "data"


class FakeS3:
    """get_object / put_object with ETags and If-Match, as S3 answers them."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.version = 0

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        body, etag = self.objects[Key]

        class Body:
            def read(self) -> bytes:
                return body

        return {"Body": Body(), "ETag": etag}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, IfMatch: str | None = None, **_: Any) -> None:
        if IfMatch is not None and (Key not in self.objects or self.objects[Key][1] != IfMatch):
            raise ClientError({"Error": {"Code": "PreconditionFailed"}}, "PutObject")
        self.version += 1
        self.objects[Key] = (Body, f'"{self.version}"')

    def get_paginator(self, name: str) -> Any:
        objects = self.objects

        class Pages:
            def paginate(self, *, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                return [{"Contents": [{"Key": k} for k in sorted(objects) if k.startswith(Prefix)]}]

        return Pages()

    def record(self, item_id: str = "0") -> dict[str, Any]:
        return dict(json.loads(self.objects[review_key(EXEC, item_id)][0]))


class FakeSfn:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.error = error

    def send_task_success(self, *, taskToken: str, output: str) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append({"token": taskToken, "output": json.loads(output)})


def parked(
    s3: FakeS3, *, waited_since: datetime, timeout_s: int = 3600, earlier_s: float = 0.0
) -> ReviewStore:
    store = ReviewStore(BUCKET, s3)
    interrupts = [
        {"id": "i-1", "node": "left", "value": "<b>x</b>"},
        {"id": "i-2", "node": "right", "value": 2},
    ]
    ref = store.record_interrupts(EXEC, "0", "g", interrupts)
    if earlier_s:  # as if an earlier round had been answered after this long
        record, _ = store.get(ref.key) or ({}, "")
        store.put(ref.key, {**record, "waited_s": earlier_s})
    store.park(ref.key, "token-1", timeout_s, now=waited_since)
    return store


def aws_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}}, "SendTaskSuccess")


def test_an_answer_claims_the_record_then_sends_one_value_per_interrupt() -> None:
    s3, sfn = FakeS3(), FakeSfn()
    since = datetime.now(UTC) - timedelta(seconds=30)
    rv = Reviews(EXEC, parked(s3, waited_since=since, earlier_s=12.5), sfn)
    assert [(r["item_id"], r["nodes"]) for r in rv.pending()] == [("0", ["left", "right"])]
    rv.answer("0", {"approved": True})
    assert sfn.sent == [
        {
            "token": "token-1",
            "output": {"answers": {"i-1": {"approved": True}, "i-2": {"approved": True}}, "round": 1},
        }
    ]
    record = s3.record()
    assert record["status"] == ANSWERED and record["answer"] == {"approved": True}
    assert 42.0 <= record["waited_s"] < 50.0  # this round's 30 s on top of the earlier 12.5 s
    summary = ReviewStore(BUCKET, s3).summary(EXEC, "0")
    assert summary is not None and summary["rounds"] == 1 and summary["waited_s"] == record["waited_s"]
    with pytest.raises(NotWaiting, match="already answered"):
        rv.answer("0", {"approved": False})
    assert len(sfn.sent) == 1


def test_a_failed_connection_puts_the_record_back_as_it_was() -> None:
    s3 = FakeS3()
    rv = Reviews(
        EXEC, parked(s3, waited_since=datetime.now(UTC)), FakeSfn(EndpointConnectionError(endpoint_url="u"))
    )
    before = s3.record()
    with pytest.raises(EndpointConnectionError):
        rv.answer("0", "yes")
    assert s3.record() == before and before["status"] == WAITING  # still waiting, nothing of the answer kept


def test_a_passing_aws_error_puts_the_record_back_and_is_raised() -> None:
    s3 = FakeS3()
    rv = Reviews(EXEC, parked(s3, waited_since=datetime.now(UTC)), FakeSfn(aws_error("ThrottlingException")))
    before = s3.record()
    with pytest.raises(ClientError):
        rv.answer("0", "yes")
    assert s3.record() == before


def test_a_timed_out_task_refuses_the_answer_in_one_line() -> None:
    s3 = FakeS3()
    rv = Reviews(EXEC, parked(s3, waited_since=datetime.now(UTC)), FakeSfn(aws_error("TaskTimedOut")))
    with pytest.raises(NotWaiting, match="item 0 of run1: the review timed out, the item ended as failed"):
        rv.answer("0", "late")
    record = s3.record()
    assert record["status"] == TIMED_OUT and "answer" not in record and record["refused"] == "TaskTimedOut"


def test_a_review_past_its_deadline_is_refused_before_anything_is_sent() -> None:
    s3, sfn = FakeS3(), FakeSfn()
    rv = Reviews(EXEC, parked(s3, waited_since=datetime.now(UTC) - timedelta(seconds=20), timeout_s=10), sfn)
    with pytest.raises(NotWaiting, match="its review timed out at"):
        rv.answer("0", "late")
    assert sfn.sent == []


def test_a_stopped_execution_token_says_the_item_no_longer_waits() -> None:
    s3 = FakeS3()
    rv = Reviews(EXEC, parked(s3, waited_since=datetime.now(UTC)), FakeSfn(aws_error("TaskDoesNotExist")))
    with pytest.raises(NotWaiting, match="no longer waiting \\(TaskDoesNotExist"):
        rv.answer("0", "x")
    assert s3.record()["status"] == "ended"


def test_an_ended_execution_has_nothing_waiting() -> None:
    s3, sfn = FakeS3(), FakeSfn()
    rv = Reviews(EXEC, parked(s3, waited_since=datetime.now(UTC)), sfn, ended="ABORTED")
    assert rv.pending() == []
    with pytest.raises(NotWaiting, match="execution run1 has ended \\(ABORTED\\)"):
        rv.answer("0", "x")
    assert sfn.sent == [] and s3.record()["status"] == WAITING
    assert Reviews(EXEC, ReviewStore(BUCKET, s3), sfn).pending() != []  # the same records, while it runs


def test_an_unknown_item_is_named() -> None:
    rv = Reviews(EXEC, ReviewStore(BUCKET, FakeS3()), FakeSfn())
    with pytest.raises(NotWaiting, match="item 7 of run1 has no review"):
        rv.answer("7", "x")


# -- the command line: every mistake with reviews/resume ends in one line, exit 2 ------------------------


class FakeSfnApi(FakeSfn):
    def __init__(self, status: str = "RUNNING", error: Exception | None = None, known: bool = True) -> None:
        super().__init__(error)
        self.status, self.known = status, known

    def describe_execution(self, *, executionArn: str) -> dict[str, Any]:
        if not self.known:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ExecutionDoesNotExist",
                        "Message": f"Execution Does Not Exist: '{executionArn}'",
                    }
                },
                "DescribeExecution",
            )
        return {"status": self.status, "input": "{}", "output": None}


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    s3: FakeS3,
    sfn: FakeSfnApi,
    *args: str,
) -> tuple[int, str, str]:
    from stepgraph import clients
    from stepgraph.cli import run

    monkeypatch.setattr(clients, "client", lambda service, *_: {"s3": s3, "stepfunctions": sfn}[service])
    code = run([*args, "--bucket", BUCKET])
    out, err = capsys.readouterr()
    return code, out, err


CLI_MISTAKES = [
    # (what the user types, the state of the run, the one line expected)
    (("resume", EXEC, "7", "--value", '"x"'), {}, r"item 7 of run1 has no review \(`stepgraph reviews"),
    (("resume", EXEC, "0", "--value", "{nope"), {}, r"--value is not JSON \(Expecting property name"),
    (
        ("resume", EXEC, "0", "--file", "/nonexistent/answer.json"),
        {},
        r"--file /nonexistent/answer.json: cannot read it",
    ),
    (
        ("resume", EXEC, "0", "--value", "1", "--file", "f.json"),
        {},
        r"exactly one of --value JSON or --file FILE",
    ),
    (("resume", EXEC, "--value", "1"), {}, r"name one ITEM or pass --all"),
    (("resume", EXEC, "0", "--all", "--value", "1"), {}, r"name one ITEM or pass --all"),
    (("resume", "run1", "0", "--value", "1"), {}, r"'run1' is not an execution ARN \(pass the ARN"),
    (("reviews", "run1"), {}, r"'run1' is not an execution ARN"),
    (
        ("resume", EXEC, "0", "--value", "1"),
        {"known": False},
        r"AWS DescribeExecution: ExecutionDoesNotExist: .*check the execution ARN",
    ),
    (("reviews", EXEC), {"known": False}, r"ExecutionDoesNotExist"),
    (
        ("resume", EXEC, "0", "--value", "1"),
        {"status": "SUCCEEDED"},
        r"execution run1 has ended \(SUCCEEDED\)",
    ),
    (
        ("resume", EXEC, "--all", "--value", "1"),
        {"status": "ABORTED"},
        r"execution run1 has ended \(ABORTED\)",
    ),
    (
        ("resume", EXEC, "0", "--value", "1"),
        {"error": aws_error("TaskTimedOut")},
        r"item 0 of run1: the review timed out",
    ),
    (
        ("resume", EXEC, "0", "--value", "1"),
        {"error": aws_error("InvalidToken")},
        r"item 0 of run1 is no longer waiting \(InvalidToken",
    ),
]


@pytest.mark.parametrize(
    ("args", "state", "line"), CLI_MISTAKES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else None
)
def test_each_cli_mistake_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    state: dict[str, Any],
    line: str,
) -> None:
    import re

    s3 = FakeS3()
    parked(s3, waited_since=datetime.now(UTC))
    code, out, err = run_cli(monkeypatch, capsys, s3, FakeSfnApi(**state), *args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(line, lines[0]), err
    assert "Traceback" not in out + err


def test_answering_twice_from_the_cli_is_refused_the_second_time(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, sfn = FakeS3(), FakeSfnApi()
    parked(s3, waited_since=datetime.now(UTC))
    code, out, _ = run_cli(monkeypatch, capsys, s3, sfn, "resume", EXEC, "0", "--value", '{"ok": 1}')
    assert code == 0 and "item 0: answered" in out
    code, _, err = run_cli(monkeypatch, capsys, s3, sfn, "resume", EXEC, "0", "--value", '{"ok": 2}')
    assert code == 2 and "was already answered at" in err and len(sfn.sent) == 1


def test_reviews_of_an_ended_execution_say_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    parked(s3, waited_since=datetime.now(UTC))
    code, out, _ = run_cli(monkeypatch, capsys, s3, FakeSfnApi(status="FAILED"), "reviews", EXEC)
    assert code == 0 and out.strip() == "no items waiting for a review (the execution has ended: FAILED)"
    code, out, _ = run_cli(monkeypatch, capsys, s3, FakeSfnApi(), "reviews", EXEC, "--json")
    assert code == 0 and [r["item_id"] for r in json.loads(out)] == ["0"]


def test_an_answer_from_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    s3, sfn = FakeS3(), FakeSfnApi()
    parked(s3, waited_since=datetime.now(UTC))
    answer = tmp_path / "answer.json"
    answer.write_text('{"action": "edit", "label": "<script>x</script>"}\n')
    code, out, err = run_cli(monkeypatch, capsys, s3, sfn, "resume", EXEC, "0", "--file", str(answer))
    assert code == 0, err
    assert sfn.sent[0]["output"]["answers"]["i-1"] == {"action": "edit", "label": "<script>x</script>"}
