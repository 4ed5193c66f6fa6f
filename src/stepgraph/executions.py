"""Start executions and read their progress, on AWS or a local endpoint (`--endpoint-url`)."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.progress import RunCounters, RunCounts
from stepgraph.schemas import check_item_sizes, check_items_key, parse_execution_input


def _client(service: str, endpoint_url: str | None, region: str | None) -> Any:
    import boto3

    return boto3.session.Session().client(service, endpoint_url=endpoint_url, region_name=region)  # type: ignore[call-overload]


def region_of(arn: str) -> str | None:
    """The region an ARN names (`arn:aws:states:<region>:...`), or None."""
    parts = arn.split(":")
    return parts[3] or None if len(parts) > 4 and parts[0] == "arn" else None


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
    sfn = _client("stepfunctions", endpoint_url, region)
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
    s3 = _client("s3", endpoint_url, region)
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


def status_clients(
    *, endpoint_url: str | None = None, region: str | None = None, dynamodb_endpoint_url: str | None = None
) -> dict[str, Any]:
    """The three clients `status` uses, made once (`--wait` reuses them on every poll)."""
    ddb_endpoint = dynamodb_endpoint_url or endpoint_url
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
    records (at most `failures_limit` downloaded; 0 skips them, as `--wait` does between polls). While the
    run goes on, and unless `failures_limit` is 0, `items_in_review` and `longest_review_wait_s` count the
    items waiting for a person (one listing of its `reviews/` records, a read per record).

    `bucket` is the stack's data bucket; by default it is found from the execution (see `data_bucket`).
    `table` is the limiter table holding the counters (the CLI passes `$STEPGRAPH_LIMITER_TABLE`; default
    the local stack's name). An execution the validate-input step refused reports `rejected_at_validation` (its
    error) and no counts, since no item ran. Inline runs list their failed items in the execution output;
    Distributed Map runs write one record per failed item under `failures/{name}/`, and once such a run has
    ended, items with neither a result nor a failure record are counted as `unaccounted`.
    """
    made = clients or {}
    sfn = made.get("stepfunctions") or _client("stepfunctions", endpoint_url, region)
    desc = sfn.describe_execution(executionArn=execution_arn)
    inp = json.loads(desc.get("input") or "{}")
    out = json.loads(desc.get("output") or "null") or {}
    out = out if isinstance(out, dict) else {}
    name = resources.execution_name(execution_arn)
    items_s3 = inp.get("items_s3") or out.get("items_s3") or {}
    report: dict[str, Any] = {"status": desc["status"], "name": name, "graph": inp.get("graph")}
    inline = isinstance(out.get("items"), list)
    if inline:
        report["failed_items"] = [
            i for i in out["items"] if isinstance(i, dict) and i.get("status") == "failed"
        ]
    if desc["status"] == "FAILED":
        report["error"], report["cause"] = desc.get("error"), desc.get("cause")
        rejected = _rejected_at_validation(sfn, execution_arn, desc)
        if rejected is not None:  # no item ran: there is nothing to count
            report["rejected_at_validation"] = rejected
            return report
    bucket = bucket or data_bucket(desc, out, items_s3, sfn=sfn, endpoint_url=endpoint_url, region=region)
    counts = map_run_counts(sfn, execution_arn)
    if counts:
        report["map_run"] = counts
    ddb = made.get("dynamodb") or _client("dynamodb", dynamodb_endpoint_url or endpoint_url, region)
    table = table or resources.LIMITER_TABLE_NAME
    run = _read_counters(RunCounters(table, execution_arn, client=ddb))
    report["provider_attempts"], report["spend_usd"] = run.attempts, run.spend_usd
    report["items_done"] = run.items_done
    if run.deployments:
        report["deployments"] = _deployments(ddb, table, run.deployments, execution_arn)
    if not bucket:
        report["note"] = "the data bucket is not known: pass --bucket"
        return report
    s3 = made.get("s3") or _client("s3", endpoint_url, region)
    _retry_links(report, inp, s3, bucket, execution_arn, failures_limit)
    if not run.found:  # a run older than the counters, or one whose steps never reached a model
        report["items_done"] = _count_keys(s3, bucket, f"{resources.PREFIX_RESULTS}{name}/")
    # An ended run has nothing waiting, whatever its records say; a poll (failures_limit 0) reads no records.
    if desc["status"] == "RUNNING" and failures_limit > 0:
        report["items_in_review"], report["longest_review_wait_s"] = _in_review(s3, bucket, execution_arn)
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


def _retry_links(
    report: dict[str, Any], inp: dict[str, Any], s3: Any, bucket: str, arn: str, failures_limit: int
) -> None:
    """A retry names its original (`retry_of`); an original lists its retries (not between polls)."""
    retry_of = (inp.get("config") or {}).get("retry_of")
    if retry_of:
        report["retry_of"] = retry_of
    if failures_limit > 0:
        from stepgraph.retries import retries_of

        with contextlib.suppress(Exception):  # the links are an extra: the counts above still answer
            links = retries_of(s3, bucket, arn)
            if links:
                report["retried"] = links


def _in_review(s3: Any, bucket: str, execution_arn: str) -> tuple[int, float | None]:
    """Items parked on a review right now (their records under reviews/ say `waiting`), and the longest
    wait among them in seconds. One listing of the run's reviews/ prefix plus one read per record: it
    grows with the items that were ever reviewed, not with the batch."""
    from stepgraph.review.answer import waiting_for
    from stepgraph.review.store import WAITING, ReviewStore, effective_status

    waiting = [r for r in ReviewStore(bucket, s3).list(execution_arn) if effective_status(r) == WAITING]
    waits = [w for r in waiting if (w := waiting_for(r.get("waiting_since"))) is not None]
    return len(waiting), round(max(waits), 1) if waits else None


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


def _deployments(ddb: Any, table: str, counts: dict[str, dict[str, int]], run: str) -> dict[str, Any]:
    from stepgraph.pool_status import deployment_status

    try:
        return deployment_status(ddb, table, counts, run_id=run)
    except Exception:  # the counters are shown; health is an extra
        return {dep: dict(numbers) for dep, numbers in counts.items()}


def _read_counters(counters: RunCounters) -> RunCounts:
    try:
        return counters.read()
    except Exception:  # no table or no endpoint: say nothing rather than a wrong zero
        return RunCounts()


def _count_keys(s3: Any, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def _rejected_at_validation(sfn: Any, execution_arn: str, desc: dict[str, Any]) -> str | None:
    """The validate-input error when the execution ended in InputRejected (its last few events)."""
    events = sfn.get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=5)["events"]
    if not any(
        e.get("stateEnteredEventDetails", {}).get("name") == "InputRejected"
        for e in events
        if e["type"] == "FailStateEntered"
    ):
        return None
    cause = desc.get("cause") or ""
    with contextlib.suppress(json.JSONDecodeError, TypeError, AttributeError):
        cause = json.loads(cause).get("errorMessage") or cause  # a Lambda error's cause is its JSON
    return f"{desc.get('error')}: {cause}" if cause else str(desc.get("error"))


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
        cfn = _client("cloudformation", endpoint_url, region)
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


def item_states(
    execution_arn: str, *, endpoint_url: str | None = None, region: str | None = None
) -> list[dict[str, Any]]:
    """Each item's state: from an inline run's output, or from a Distributed Map's child executions."""
    sfn = _client("stepfunctions", endpoint_url, region)
    desc = sfn.describe_execution(executionArn=execution_arn)
    out = json.loads(desc.get("output") or "null")
    if isinstance(out, dict) and isinstance(out.get("items"), list):
        return list(out["items"])
    rows = []
    for run in sfn.list_map_runs(executionArn=execution_arn).get("mapRuns", []):
        for page in sfn.get_paginator("list_executions").paginate(mapRunArn=run["mapRunArn"]):
            for child in page["executions"]:
                d = sfn.describe_execution(executionArn=child["executionArn"])
                item = json.loads(d.get("input") or "{}")
                row: dict[str, Any] = {"item_id": item.get("item_id"), "execution": child["status"]}
                result = json.loads(d.get("output") or "null")
                if isinstance(result, dict):
                    row.update(
                        {k: result[k] for k in ("status", "result_ref", "error", "cause") if k in result}
                    )
                else:
                    row["status"] = child["status"].lower()
                rows.append(row)
    return sorted(rows, key=lambda r: (len(str(r["item_id"])), str(r["item_id"])))


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
