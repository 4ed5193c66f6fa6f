"""The one S3 boundary: error codes mapped once, create-only writes with 412/409 handled the same way everywhere."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from stepgraph import resources, s3
from stepgraph.runtime.results import ResultStore
from stepgraph.usage.ledger import UsageLedger
from stepgraph.usage.record import UsageRecord


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}}, "PutObject")


class ScriptedS3:
    """put_object answers from a script of error codes (None: store the object)."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.puts: list[dict[str, Any]] = []

    def put_object(self, **kwargs: Any) -> None:
        self.puts.append(kwargs)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise _error(answer)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("PreconditionFailed", s3.ObjectExists),
        ("412", s3.ObjectExists),
        ("ConditionalRequestConflict", s3.WriteBusy),
        ("409", s3.WriteBusy),
        ("NoSuchKey", s3.NoSuchObject),
        ("AccessDenied", s3.S3Unusable),
        ("NoSuchBucket", s3.S3Unusable),
    ],
)
def test_mapped_turns_known_codes_into_typed_errors(code: str, error: type[s3.S3Failure]) -> None:
    with pytest.raises(error) as info, s3.mapped("b", "k"):
        raise _error(code)
    assert info.value.code == code and info.value.bucket == "b" and info.value.key == "k"


def test_mapped_leaves_transient_errors_alone() -> None:
    with pytest.raises(ClientError), s3.mapped("b", "k"):
        raise _error("SlowDown")


def test_put_once_creates_reports_taken_and_retries_busy() -> None:
    assert s3.put_once(ScriptedS3(None), "b", "k", b"x") is True
    assert s3.put_once(ScriptedS3("PreconditionFailed"), "b", "k", b"x") is False
    slept: list[float] = []
    client = ScriptedS3("409", "ConditionalRequestConflict", None)
    assert s3.put_once(client, "b", "k", b"x", sleep=slept.append) is True
    assert slept == list(s3.BUSY_BACKOFF_S[:2]) and len(client.puts) == 3
    assert all(p["IfNoneMatch"] == "*" for p in client.puts)
    with pytest.raises(s3.WriteBusy):
        s3.put_once(ScriptedS3(*["409"] * 4), "b", "k", b"x", sleep=slept.append)


def test_result_store_treats_409_like_the_checkpointer() -> None:
    # A 409 that clears on retry, then a 412 (the twin's write landed): the result is kept, no error.
    client = ScriptedS3("409", "412")
    store = ResultStore("bkt", client)
    ref = store.put("arn:aws:states:us-east-1:1:execution:sm:run-1", "7", {"x": 1})
    assert ref.key == "results/run-1/7.json" and len(client.puts) == 2


def test_ledger_takes_the_next_name_on_412_or_409() -> None:
    client = ScriptedS3("412", "409", None)
    ledger = UsageLedger("b", execution_id="arn:x:run-2", invocation_id="inv", client=client)
    ledger.add(UsageRecord(ts="2026-01-01T00:00:00Z"))
    keys = ledger.flush()
    assert keys == ["usage/dt=2026-01-01/run-2/inv-2.jsonl"] and len(client.puts) == 3


@pytest.mark.parametrize(
    ("execution_id", "name"),
    [("arn:aws:states:us-east-1:123:execution:sm:run-1", "run-1"), ("run-2", "run-2"), ("", "")],
)
def test_execution_name(execution_id: str, name: str) -> None:
    assert resources.execution_name(execution_id) == name
