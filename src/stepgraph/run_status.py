"""`stepgraph status`: what an execution did so far, read in a number of requests that does not grow with
the batch (the execution, its Map Run's item counts, the run's counters, a page of failure records)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from stepgraph import resources
from stepgraph.clients import client
from stepgraph.executions import data_bucket
from stepgraph.progress import RunCounters, RunCounts


def status_clients(
    *, endpoint_url: str | None = None, region: str | None = None, dynamodb_endpoint_url: str | None = None
) -> dict[str, Any]:
    """The three clients `status` uses, made once (`--wait` reuses them on every poll)."""
    ddb_endpoint = dynamodb_endpoint_url or endpoint_url
    return {
        "stepfunctions": client("stepfunctions", endpoint_url, region),
        "s3": client("s3", endpoint_url, region),
        "dynamodb": client("dynamodb", ddb_endpoint, region),
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
    sfn = made.get("stepfunctions") or client("stepfunctions", endpoint_url, region)
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
    ddb = made.get("dynamodb") or client("dynamodb", dynamodb_endpoint_url or endpoint_url, region)
    table = table or resources.LIMITER_TABLE_NAME
    run = _read_counters(RunCounters(table, execution_arn, client=ddb))
    report["provider_attempts"], report["spend_usd"] = run.attempts, run.spend_usd
    report["items_done"] = run.items_done
    if run.deployments:
        report["deployments"] = _deployments(ddb, table, run.deployments, execution_arn)
    if not bucket:
        report["note"] = "the data bucket is not known: pass --bucket"
        return report
    s3 = made.get("s3") or client("s3", endpoint_url, region)
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


def item_states(
    execution_arn: str, *, endpoint_url: str | None = None, region: str | None = None
) -> list[dict[str, Any]]:
    """Each item's state: from an inline run's output, or from a Distributed Map's child executions."""
    sfn = client("stepfunctions", endpoint_url, region)
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
