"""Start executions, on AWS or a local endpoint (`--endpoint-url`): items read and checked, the state
machine found from a stack name, the data bucket found from an execution (`stepgraph.run_status` reads
their progress)."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.clients import client
from stepgraph.errors import ConfigError
from stepgraph.schemas import check_item_sizes, check_items_key, parse_execution_input


def resolve_state_machine(target: str, *, endpoint_url: str | None = None, region: str | None = None) -> str:
    """A state machine ARN as given, or the `StateMachineArn` output of a CloudFormation stack name."""
    if target.startswith("arn:"):
        return target
    cfn = client("cloudformation", endpoint_url, region)
    try:
        outputs = cfn.describe_stacks(StackName=target)["Stacks"][0].get("Outputs", [])
    except Exception as exc:
        raise ConfigError(
            f"no stack {target!r} found ({type(exc).__name__})", hint="pass the state machine ARN"
        ) from None
    for out in outputs:
        if out["OutputKey"] == "StateMachineArn":
            return str(out["OutputValue"])
    raise ConfigError(f"stack {target!r} has no StateMachineArn output")


def read_items(path: Path) -> list[Any]:
    """The items of a JSONL file, one JSON value per line; a bad line is named by file and line."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            f"cannot read the items file {path}: {reason}", hint="a JSONL file, one item per line"
        ) from None
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{path}:{n}: not JSON ({exc.msg})", hint="one JSON value per line (JSONL)"
                ) from None
    return items


NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _check_bucket(bucket: str, flag: str) -> None:
    if not BUCKET_RE.match(bucket):
        raise ConfigError(
            f"{flag}: {bucket!r} is not an S3 bucket name", hint="3-63 lowercase letters, digits, '.' or '-'"
        )


def _execution_arn(state_machine_arn: str, name: str) -> str:
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


def _name_taken(sfn: Any, state_machine_arn: str, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        sfn.describe_execution(executionArn=_execution_arn(state_machine_arn, name))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return False
        raise
    return True


def _s3_error(exc: Any, where: str, action: str) -> ConfigError:
    code = exc.response.get("Error", {}).get("Code", "?")
    hints = {
        "NoSuchBucket": "check --bucket: the stack's DataBucketName output",
        "NoSuchKey": "check the key",
        "404": "check the bucket and key",
        "AccessDenied": "check the credentials' permissions there",
        "403": "check the credentials' permissions there",
        "PreconditionFailed": "an object is there already and is never overwritten: pick another --name",
    }
    return ConfigError(f"cannot {action} {where} ({code})", hint=hints.get(code, "check the bucket and key"))


def start(
    state_machine: str,
    *,
    graph: str,
    items: str,
    bucket: str | None = None,
    config: dict[str, Any] | None = None,
    name: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    force_new_name: bool = False,
) -> str:
    """Start one execution. `items` is a JSONL file (uploaded as a JSON array under items/) or s3://b/k.

    Everything is checked before anything is written: the items (a file with none is refused), the
    input with its config, the state machine and the name. A name already used is refused, or with
    `force_new_name` replaced by a fresh one; the items object is created, never overwritten."""
    from botocore.exceptions import ClientError

    if name is not None and not NAME_RE.match(name):
        raise ConfigError(
            f"--name {name!r} is not a valid execution name", hint="1-80 letters, digits, - or _"
        )
    name = name or f"run-{uuid.uuid4().hex[:12]}"
    rows: list[Any] | None = None
    if items.startswith("s3://"):
        b, _, key = items.removeprefix("s3://").partition("/")
        if not b or not key:
            raise ConfigError(f"--items {items!r} names no object", hint="s3://bucket/key of a JSON array")
        _check_bucket(b, "--items")
        payload: dict[str, Any] = {"graph": graph, "items_s3": {"bucket": b, "key": key}}
    else:
        rows = read_items(Path(items))
        check_item_sizes(rows, where=f"{items} item")
        if not rows:
            raise ConfigError(f"--items {items}: the file holds no items", hint="one JSON value per line")
        if not bucket:
            raise ConfigError(
                "--bucket is needed to upload a local JSONL file", hint="the stack's DataBucketName output"
            )
        _check_bucket(bucket, "--bucket")
        payload = {
            "graph": graph,
            "items_s3": {"bucket": bucket, "key": f"{resources.PREFIX_ITEMS}{name}/items.json"},
        }
    if config:
        payload["config"] = config
    parsed = parse_execution_input(payload)  # fail here, with the field named, not in the state machine
    if parsed.items_s3 is not None:
        check_items_key(parsed.items_s3, where="--items")
    arn = resolve_state_machine(state_machine, endpoint_url=endpoint_url, region=region)
    sfn = client("stepfunctions", endpoint_url, region)
    sfn.describe_state_machine(stateMachineArn=arn)  # StateMachineDoesNotExist before any upload
    if _name_taken(sfn, arn, name):
        if not force_new_name:
            raise ConfigError(
                f"--name {name}: an execution of that name exists already",
                hint="pick another name, or pass --force-new-name for a fresh one",
            )
        base = name
        while _name_taken(sfn, arn, name):
            name = f"{base[:67]}-{uuid.uuid4().hex[:12]}"
    s3 = client("s3", endpoint_url, region)
    ref = payload["items_s3"]
    if rows is not None:
        ref["key"] = f"{resources.PREFIX_ITEMS}{name}/items.json"
        where = f"s3://{ref['bucket']}/{ref['key']}"
        try:  # create-only: an earlier run's items are never replaced
            s3.put_object(
                Bucket=ref["bucket"], Key=ref["key"], Body=json.dumps(rows).encode(), IfNoneMatch="*"
            )
        except ClientError as exc:
            raise _s3_error(exc, where, "upload the items to") from None
    else:
        try:
            s3.head_object(Bucket=ref["bucket"], Key=ref["key"])
        except ClientError as exc:
            raise _s3_error(exc, items, "read the items at") from None
    try:
        return str(
            sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"]
        )
    except ClientError:
        if rows is not None:  # nothing started: leave no orphaned upload behind
            s3.delete_object(Bucket=ref["bucket"], Key=ref["key"])
        raise


def data_bucket(
    desc: dict[str, Any],
    out: dict[str, Any],
    items_s3: dict[str, Any],
    *,
    sfn: Any,
    endpoint_url: str | None,
    region: str | None,
) -> str | None:
    """The stack's data bucket, found from the execution: a result's `result_ref`, the items' bucket,
    the bucket the state machine writes failure records to, or the stack's DataBucketName output."""
    for item in out.get("items") or []:
        ref = item.get("result_ref") if isinstance(item, dict) else None
        if isinstance(ref, dict) and ref.get("bucket"):
            return str(ref["bucket"])
    if items_s3.get("bucket"):  # the stack grants reading items only under items/ of its data bucket
        return str(items_s3["bucket"])
    with contextlib.suppress(Exception):  # reading the definition may be denied: try the next source
        definition = sfn.describe_state_machine(stateMachineArn=desc["stateMachineArn"])["definition"]
        found = _written_bucket(json.loads(definition))
        if found:
            return found
    with contextlib.suppress(Exception):  # no CloudFormation (a local endpoint) or no permission
        cfn = client("cloudformation", endpoint_url, region)
        for page in cfn.get_paginator("describe_stacks").paginate():
            for stack in page["Stacks"]:
                outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
                if outputs.get("StateMachineArn") == desc["stateMachineArn"] and outputs.get(
                    "DataBucketName"
                ):
                    return str(outputs["DataBucketName"])
    return None


def _written_bucket(node: Any) -> str | None:
    """The Bucket of the definition's S3 putObject task (the failure records of the data bucket)."""
    if isinstance(node, dict):
        if str(node.get("Resource", "")).endswith(":s3:putObject"):
            bucket = node.get("Parameters", {}).get("Bucket")
            if isinstance(bucket, str):
                return bucket
        node = list(node.values())
    if isinstance(node, list):
        for v in node:
            found = _written_bucket(v)
            if found:
                return found
    return None
