"""The CLI's one error boundary: an error a user can cause becomes one line (what, where, what to do).

Exit codes: 0 all well, 1 the batch ran and an item in it failed (the commands decide that), 2 a user's
mistake (a flag, a file, the JSON in it, AWS saying no, no credentials or region, a busy port), 3 an error
that is a bug of ours. `--debug` anywhere on the command line shows the traceback instead.
"""

from __future__ import annotations

import errno
import json
from typing import Any

USER_ERROR = 2
INTERNAL_ERROR = 3

# What to do about an AWS error code, when the code alone says it.
AWS_HINTS = {
    "ExecutionDoesNotExist": "check the execution ARN (stepgraph start prints it)",
    "StateMachineDoesNotExist": "check the state machine ARN, or pass the stack name",
    "InvalidArn": "pass a full ARN, arn:aws:states:<region>:<account>:execution:<state machine>:<name>",
    "InvalidName": "execution names are 1-80 letters, digits, '-' or '_'",
    "ExecutionAlreadyExists": "pick another --name",
    "NoSuchBucket": "check --bucket (the stack's DataBucketName output)",
    "NoSuchKey": "check the s3:// key",
    "AccessDenied": "check the credentials' permissions for this resource",
    "AccessDeniedException": "check the credentials' permissions for this resource",
    "UnrecognizedClientException": "check the AWS credentials",
    "InvalidClientTokenId": "check the AWS credentials",
    "ExpiredToken": "refresh the AWS credentials",
    "ExpiredTokenException": "refresh the AWS credentials",
    "InvalidRequestException": "check the Athena --workgroup and --database",
    "ValidationError": "check the stack name (stepgraph start StepGraph ...) or pass the ARN",
    "ResourceNotFoundException": "is the stack deployed there? check --region and --endpoint-url",
}


def user_message(exc: BaseException) -> str | None:
    """One line for an error a user caused, or None when it is a bug (the caller says so)."""
    from botocore import exceptions as boto
    from pydantic import ValidationError
    from typer._click import exceptions as click_exc

    from stepgraph.errors import StepGraphError

    if isinstance(exc, StepGraphError):
        return str(exc)
    if isinstance(exc, click_exc.UsageError):
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        return f"{exc.format_message()}{where}"
    if isinstance(exc, click_exc.ClickException):
        return exc.format_message()
    if isinstance(exc, boto.NoCredentialsError):
        return "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    if isinstance(exc, boto.NoRegionError):
        return "no AWS region given (pass --region or set AWS_DEFAULT_REGION)"
    if isinstance(exc, boto.ProfileNotFound):
        return f"{exc} (check AWS_PROFILE against ~/.aws/config)"
    if isinstance(exc, boto.EndpointConnectionError | boto.ConnectionClosedError | boto.ReadTimeoutError):
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "")
        return f"cannot reach the AWS endpoint {url} (is `stepgraph local up` running there? check --endpoint-url)"
    if isinstance(exc, boto.ParamValidationError):
        return f"AWS refused the request: {_one_line(str(exc))}"
    if isinstance(exc, boto.ClientError):
        return _client_error(exc)
    if isinstance(exc, boto.BotoCoreError):
        return f"AWS client: {_one_line(str(exc))}"
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        return f"{exc.title}: {loc}: {err['msg']}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
    if isinstance(exc, OSError):
        return _os_error(exc)
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _client_error(exc: Any) -> str:
    err = exc.response.get("Error", {})
    code, message = str(err.get("Code", "?")), _one_line(str(err.get("Message") or ""))
    op = exc.operation_name
    hint = AWS_HINTS.get(code)
    if code.isdigit() and int(code) >= 500:
        hint = "the AWS endpoint failed; run again, or with --debug"
    return f"AWS {op}: {code}" + (f": {message}" if message else "") + (f" ({hint})" if hint else "")


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.EADDRINUSE:
        return f"address already in use{where} (another process has the port: pick another --port)"
    if isinstance(exc, FileNotFoundError):
        return f"no such file or directory:{where} (check the path)"
    if isinstance(exc, IsADirectoryError):
        return f"{where.strip()} is a directory, not a file (name a file)"
    if isinstance(exc, PermissionError):
        return f"permission denied:{where} (pick a path you can read and write)"
    return f"{exc.strerror or exc}:{where} (check the path)"
