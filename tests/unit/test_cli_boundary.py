"""The CLI's error boundary maps each error a user can cause to one line saying what, where, what to do."""

from __future__ import annotations

import errno
import json
import re

import pytest
from botocore import exceptions as boto
from pydantic import BaseModel, ValidationError

from stepgraph.cli.boundary import user_message
from stepgraph.errors import ConfigError


class Model(BaseModel):
    n: int


def validation_error() -> ValidationError:
    try:
        Model.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError


def client_error(code: str, message: str, op: str) -> boto.ClientError:
    return boto.ClientError({"Error": {"Code": code, "Message": message}}, op)


ROWS = [
    (ConfigError("--x is bad", hint="use y"), r"^--x is bad \(use y\)$"),
    (client_error("InvalidRequestException", "WorkGroup stepgraph is not found", "StartQueryExecution"),
     r"^AWS StartQueryExecution: InvalidRequestException: WorkGroup stepgraph is not found \(check the Athena --workgroup"),
    (client_error("ExecutionDoesNotExist", "Execution Does Not Exist: 'arn:x'", "DescribeExecution"),
     r"ExecutionDoesNotExist: Execution Does Not Exist: 'arn:x' \(check the execution ARN"),
    (client_error("InvalidArn", "Invalid Arn: 'nope'", "DescribeExecution"), r"InvalidArn: .*\(pass a full ARN"),
    (client_error("ExpiredToken", "expired", "DescribeStacks"), r"\(refresh the AWS credentials\)$"),
    (client_error("500", "", "ListObjectsV2"), r"^AWS ListObjectsV2: 500 \(the AWS endpoint failed"),
    (boto.NoCredentialsError(), r"^no AWS credentials found"),
    (boto.NoRegionError(), r"^no AWS region given \(pass --region"),
    (boto.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), r"cannot reach the AWS endpoint http://127\.0\.0\.1:9 \(is `stepgraph local up`"),
    (OSError(errno.EADDRINUSE, "Address already in use"), r"^address already in use"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/items.jsonl"), r"^no such file or directory: /x/items\.jsonl"),
    (PermissionError(errno.EACCES, "Permission denied", "/proc/x"), r"^permission denied: /proc/x"),
    (json.JSONDecodeError("Expecting value", "x", 0), r"^not JSON \(Expecting value, line 1 column 1\)$"),
    (validation_error(), r"^Model: n: Input should be a valid integer"),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "match"), ROWS, ids=[type(r[0]).__name__ for r in ROWS])
def test_a_user_error_is_one_line(exc: BaseException, match: str) -> None:
    message = user_message(exc)
    assert message is not None and "\n" not in message and re.search(match, message), message


@pytest.mark.parametrize("exc", [ZeroDivisionError("x"), KeyError("k"), AttributeError("a")])
def test_a_bug_is_not_a_user_error(exc: BaseException) -> None:
    assert user_message(exc) is None
