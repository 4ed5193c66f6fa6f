"""Start executions and read their progress, on AWS or a local endpoint (`--endpoint-url`)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.progress import RunCounters, RunCounts, run_name
from stepgraph.schemas import parse_execution_input

ENV_DYNAMODB_ENDPOINT = "STEPGRAPH_DYNAMODB_ENDPOINT_URL"


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


def status_clients(
    *, endpoint_url: str | None = None, region: str | None = None, dynamodb_endpoint_url: str | None = None
) -> dict[str, Any]:
    """The three clients `status` uses, made once (`--wait` reuses them on every poll)."""
    ddb_endpoint = dynamodb_endpoint_url or os.environ.get(ENV_DYNAMODB_ENDPOINT) or endpoint_url
    return {
        "stepfunctions": _client("stepfunctions", endpoint_url, region),
        "s3": _client("s3", endpoint_url, region),
        "dynamodb": _client("dynamodb", ddb_endpoint, region),
    }


def status(
    execution_arn: str,
    *,
    bucket: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    table: str | None = None,
    dynamodb_endpoint_url: str | None = None,
    failures_limit: int = 50,
    clients: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Execution status, items done, failures and spend so far, in a number of requests that does not
    grow with the batch: one DescribeExecution, the Distributed Map's Map Run (its item counts), one read
    of the run's counters (`stepgraph.progress`: attempts, spend, items done) and one page of failure
    records (at most `failures_limit` downloaded; 0 skips them, as `--wait` does between polls).

    `bucket` is the stack's data bucket; by default the bucket the items were read from. `table` is the
    limiter table holding the counters (default `$STEPGRAPH_LIMITER_TABLE`, else the local stack's name).
    Inline runs list their failed items in the execution output; Distributed Map runs write one record per
    failed item under `failures/{name}/`, and once such a run has ended, items with neither a result nor a
    failure record are counted as `unaccounted`.
    """
    made = clients or {}
    sfn = made.get("stepfunctions") or _client("stepfunctions", endpoint_url, region)
    desc = sfn.describe_execution(executionArn=execution_arn)
    inp = json.loads(desc.get("input") or "{}")
    out = json.loads(desc.get("output") or "null") or {}
    out = out if isinstance(out, dict) else {}
    name = run_name(execution_arn)
    items_s3 = inp.get("items_s3") or out.get("items_s3") or {}
    bucket = bucket or items_s3.get("bucket")
    report: dict[str, Any] = {"status": desc["status"], "name": name, "graph": inp.get("graph")}
    inline = isinstance(out.get("items"), list)
    if inline:
        report["failed_items"] = [i for i in out["items"] if i.get("status") == "failed"]
    if desc["status"] == "FAILED":
        report["error"], report["cause"] = desc.get("error"), desc.get("cause")
    counts = map_run_counts(sfn, execution_arn)
    if counts:
        report["map_run"] = counts
    ddb = made.get("dynamodb") or _client(
        "dynamodb", dynamodb_endpoint_url or os.environ.get(ENV_DYNAMODB_ENDPOINT) or endpoint_url, region
    )
    table = table or os.environ.get(resources.ENV_LIMITER_TABLE) or resources.LIMITER_TABLE_NAME
    run = _read_counters(RunCounters(table, execution_arn, client=ddb))
    report["provider_attempts"], report["spend_usd"] = run.attempts, run.spend_usd
    report["items_done"] = run.items_done
    if not bucket:
        return report
    s3 = made.get("s3") or _client("s3", endpoint_url, region)
    if not run.found:  # a run older than the counters, or one whose steps never reached a model
        report["items_done"] = _count_keys(s3, bucket, f"{resources.PREFIX_RESULTS}{name}/")
    if not inline:
        failed_count, failed = _failure_records(s3, bucket, name, failures_limit)
        report["failed_count"] = failed_count
        report["failed_items"] = failed
        if failed_count > len(failed):
            report["failed_items_more"] = failed_count - len(failed)
        if desc["status"] != "RUNNING" and items_s3:
            total = counts.get("total") if counts else None
            if not isinstance(total, int):
                total = out.get("item_count")
            if not isinstance(total, int):
                total = _manifest_length(s3, items_s3)
            if total is not None:
                lost = (counts or {}).get("failed", 0) + (counts or {}).get("timedOut", 0)
                report["unaccounted"] = max(total - report["items_done"] - failed_count - lost, 0) + lost
    return report


def map_run_counts(sfn: Any, execution_arn: str) -> dict[str, int] | None:
    """The item counts of the execution's Distributed Map run (`DescribeMapRun`), or None (inline, local)."""
    try:
        runs = sfn.list_map_runs(executionArn=execution_arn, maxResults=1).get("mapRuns", [])
        if not runs:
            return None
        counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"]).get("itemCounts") or {}
    except Exception:  # an endpoint without Map Runs (older local stand-ins): the counters still answer
        return None
    return {k: int(v) for k, v in counts.items() if isinstance(v, int)} or None


def _read_counters(counters: RunCounters) -> RunCounts:
    try:
        return counters.read()
    except Exception:  # no table or no endpoint: say nothing rather than a wrong zero
        return RunCounts()


def _count_keys(s3: Any, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def _item_id(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def _failure_records(s3: Any, bucket: str, name: str, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """How many failure records the run has (keys listed page by page, nothing downloaded for the
    count) and the first `limit` of them in item order."""
    keys: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{resources.PREFIX_FAILURES}{name}/"
    )
    count = 0
    for page in pages:
        count += page.get("KeyCount", 0)
        if len(keys) < limit:
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    keys = sorted(keys, key=lambda k: (len(_item_id(k)), _item_id(k)))[:limit]
    records = []
    for key in keys:
        try:
            rec = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except json.JSONDecodeError:
            rec = {"item_id": _item_id(key), "status": "failed", "error": "unreadable failure record"}
        records.append(rec if isinstance(rec, dict) else {"item_id": _item_id(key), "status": "failed"})
    return count, records


def _manifest_length(s3: Any, items_s3: dict[str, Any]) -> int | None:
    """How many items a run read, from its manifest (a run that failed has no output to say so)."""
    try:
        items = json.loads(s3.get_object(Bucket=items_s3["bucket"], Key=items_s3["key"])["Body"].read())
    except Exception:  # a missing or malformed manifest: the count is unknown, not zero
        return None
    return len(items) if isinstance(items, list) else None
