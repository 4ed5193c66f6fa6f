"""Start executions and read their progress, on AWS or a local endpoint (`--endpoint-url`)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.schemas import parse_execution_input


def _client(service: str, endpoint_url: str | None, region: str | None) -> Any:
    import boto3

    return boto3.session.Session().client(service, endpoint_url=endpoint_url, region_name=region)  # type: ignore[call-overload]


def resolve_state_machine(target: str, *, endpoint_url: str | None = None, region: str | None = None) -> str:
    """A state machine ARN as given, or the `StateMachineArn` output of a CloudFormation stack name."""
    if target.startswith("arn:"):
        return target
    cfn = _client("cloudformation", endpoint_url, region)
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
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"{path}:{n}: not JSON ({exc.msg})", hint="one JSON value per line (JSONL)"
                ) from None
    return items


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
) -> str:
    """Start one execution. `items` is a JSONL file (uploaded as a JSON array under items/) or s3://b/k."""
    arn = resolve_state_machine(state_machine, endpoint_url=endpoint_url, region=region)
    name = name or f"run-{uuid.uuid4().hex[:12]}"
    if items.startswith("s3://"):
        b, _, key = items.removeprefix("s3://").partition("/")
        payload: dict[str, Any] = {"graph": graph, "items_s3": {"bucket": b, "key": key}}
    else:
        rows = read_items(Path(items))
        if not bucket:
            raise ConfigError(
                "--bucket is needed to upload a local JSONL file", hint="the stack's DataBucketName output"
            )
        key = f"{resources.PREFIX_ITEMS}{name}/items.json"
        _client("s3", endpoint_url, region).put_object(Bucket=bucket, Key=key, Body=json.dumps(rows).encode())
        payload = {"graph": graph, "items_s3": {"bucket": bucket, "key": key}}
    if config:
        payload["config"] = config
    parse_execution_input(payload)  # fail here, with the field named, rather than in the state machine
    sfn = _client("stepfunctions", endpoint_url, region)
    return str(sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"])


def status(
    execution_arn: str, *, endpoint_url: str | None = None, region: str | None = None
) -> dict[str, Any]:
    """Execution status, items done so far (results in S3), failures, and spend so far (usage records)."""
    sfn = _client("stepfunctions", endpoint_url, region)
    desc = sfn.describe_execution(executionArn=execution_arn)
    inp = json.loads(desc.get("input") or "{}")
    out = json.loads(desc.get("output") or "null") or {}
    name = execution_arn.rsplit(":", 1)[-1]
    bucket = (inp.get("items_s3") or {}).get("bucket")
    report: dict[str, Any] = {"status": desc["status"], "name": name, "graph": inp.get("graph")}
    if isinstance(out, dict) and isinstance(out.get("items"), list):
        report["failed_items"] = [i for i in out["items"] if i.get("status") == "failed"]
    if desc["status"] == "FAILED":
        report["error"], report["cause"] = desc.get("error"), desc.get("cause")
    if bucket:
        s3 = _client("s3", endpoint_url, region)
        report["items_done"] = s3.list_objects_v2(
            Bucket=bucket, Prefix=f"{resources.PREFIX_RESULTS}{name}/"
        ).get("KeyCount", 0)
        spend, attempts = 0.0, 0
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=resources.PREFIX_USAGE
        ):
            for obj in page.get("Contents", []):
                if f"/{name}/" not in obj["Key"]:
                    continue
                for line in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode().splitlines():
                    rec = json.loads(line)
                    attempts += 1
                    spend += rec.get("cost_usd") or 0.0
        report["provider_attempts"], report["spend_usd"] = attempts, round(spend, 6)
    return report
