"""Start executions and read their progress, on AWS or a local endpoint (`--endpoint-url`)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.schemas import check_item_sizes, check_items_key, parse_execution_input


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
        check_item_sizes(rows, where=f"{items} item")
        if not bucket:
            raise ConfigError(
                "--bucket is needed to upload a local JSONL file", hint="the stack's DataBucketName output"
            )
        key = f"{resources.PREFIX_ITEMS}{name}/items.json"
        _client("s3", endpoint_url, region).put_object(Bucket=bucket, Key=key, Body=json.dumps(rows).encode())
        payload = {"graph": graph, "items_s3": {"bucket": bucket, "key": key}}
    if config:
        payload["config"] = config
    parsed = parse_execution_input(payload)  # fail here, with the field named, not in the state machine
    if parsed.items_s3 is not None:
        check_items_key(parsed.items_s3, where="--items")
    sfn = _client("stepfunctions", endpoint_url, region)
    return str(sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"])


def status(
    execution_arn: str,
    *,
    bucket: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> dict[str, Any]:
    """Execution status, items done so far (results in S3), failures, and spend so far (usage records).

    `bucket` is the stack's data bucket; by default the bucket the items were read from. Inline runs list
    their failed items in the execution output; Distributed Map runs write one record per failed item under
    `failures/{name}/`, and once such a run has ended, items with neither a result nor a failure record are
    counted as `unaccounted`.
    """
    sfn = _client("stepfunctions", endpoint_url, region)
    desc = sfn.describe_execution(executionArn=execution_arn)
    inp = json.loads(desc.get("input") or "{}")
    out = json.loads(desc.get("output") or "null") or {}
    out = out if isinstance(out, dict) else {}
    name = execution_arn.rsplit(":", 1)[-1]
    items_s3 = inp.get("items_s3") or out.get("items_s3") or {}
    bucket = bucket or items_s3.get("bucket")
    report: dict[str, Any] = {"status": desc["status"], "name": name, "graph": inp.get("graph")}
    inline = isinstance(out.get("items"), list)
    if inline:
        report["failed_items"] = [i for i in out["items"] if i.get("status") == "failed"]
    if desc["status"] == "FAILED":
        report["error"], report["cause"] = desc.get("error"), desc.get("cause")
    if not bucket:
        return report
    s3 = _client("s3", endpoint_url, region)
    done = {_item_id(k) for k in _keys(s3, bucket, f"{resources.PREFIX_RESULTS}{name}/")}
    report["items_done"] = len(done)
    report["items_in_review"] = _in_review(s3, bucket, execution_arn)
    if not inline:
        failed = _failure_records(s3, bucket, name)
        report["failed_items"] = failed
        if desc["status"] != "RUNNING" and items_s3:
            total = out.get("item_count")
            if not isinstance(total, int):
                total = _manifest_length(s3, items_s3)
            if total is not None:
                accounted = done | {str(f.get("item_id")) for f in failed}
                report["unaccounted"] = max(total - len(accounted), 0)
    report["provider_attempts"], report["spend_usd"] = _spend(s3, bucket, name)
    return report


def _in_review(s3: Any, bucket: str, execution_arn: str) -> int:
    """Items parked on a review right now (their records under reviews/ say `waiting`)."""
    from stepgraph.review.store import WAITING, ReviewStore, effective_status

    return sum(effective_status(r) == WAITING for r in ReviewStore(bucket, s3).list(execution_arn))


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]


def _item_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def _failure_records(s3: Any, bucket: str, name: str) -> list[dict[str, Any]]:
    """The records the state machine wrote for failed Distributed Map items, in item order."""
    records = []
    for key in _keys(s3, bucket, f"{resources.PREFIX_FAILURES}{name}/"):
        try:
            rec = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except json.JSONDecodeError:
            rec = {"item_id": _item_id(key), "status": "failed", "error": "unreadable failure record"}
        records.append(rec if isinstance(rec, dict) else {"item_id": _item_id(key), "status": "failed"})
    return sorted(records, key=lambda r: (len(str(r.get("item_id"))), str(r.get("item_id"))))


def _manifest_length(s3: Any, items_s3: dict[str, Any]) -> int | None:
    """How many items a run read, from its manifest (a run that failed has no output to say so)."""
    try:
        items = json.loads(s3.get_object(Bucket=items_s3["bucket"], Key=items_s3["key"])["Body"].read())
    except Exception:  # a missing or malformed manifest: the count is unknown, not zero
        return None
    return len(items) if isinstance(items, list) else None


def _spend(s3: Any, bucket: str, name: str) -> tuple[int, float]:
    from stepgraph.usage import layout

    spend, attempts = 0.0, 0
    for rec in layout.s3_records(s3, bucket, execution=name):
        attempts += 1
        spend += rec.get("cost_usd") or 0.0
    return attempts, round(spend, 6)
