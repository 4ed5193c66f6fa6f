"""`stepgraph retry`: run an ended execution's failed or unaccounted items again, where they stopped.

Step Functions' redrive cannot do this (the Map catches item failures into records, so the execution
succeeded). A retry is a new execution of the same state machine, graph and config with
`config.retry_of` naming the execution whose threads it resumes; its items are envelopes
(`schemas.retry_envelope`) carrying each original item id, so graph-step loads the item's own thread
(`{original name}/{item id}`) and continues at the node that failed. The link is kept both ways: the
retry's input names the original, and `retries/{original name}/{retry name}.json` in the data bucket
(written once) lets `stepgraph status` of the original say what was retried where.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.schemas import RETRIED_ITEM, parse_execution_input, retry_envelope

ITEM_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,512}$")


@dataclass
class RetryPlan:
    """Which items of `execution_arn` a retry runs, and what it needs to start."""

    execution_arn: str
    state_machine_arn: str
    graph: str
    config: dict[str, Any]
    inline: bool
    item_ids: list[str]
    items: dict[str, Any]  # item id -> the item as the graph sees it
    bucket: str | None


def parse_item_ids(text: str) -> list[str]:
    """`3,7,12` -> ["3", "7", "12"]; a malformed list is one line naming the bad part."""
    parts = [p.strip() for p in text.split(",")]
    bad = [p for p in parts if not ITEM_ID_RE.match(p)]
    if bad or not parts:
        raise ConfigError(
            f"--items {text!r}: {bad[0]!r} is not an item id" if bad else f"--items {text!r} names no item",
            hint="item ids separated by commas, e.g. --items 3,7,12 (as status lists them)",
        )
    return list(dict.fromkeys(parts))


def _original_items(inp: dict[str, Any], s3: Any) -> tuple[list[str], dict[str, Any]]:
    """The execution's item ids (Map indexes, or a retry's envelope ids) and items, in Map order."""
    rows = inp.get("items")
    if rows is None:
        ref = inp.get("items_s3") or {}
        rows = json.loads(s3.get_object(Bucket=ref["bucket"], Key=ref["key"])["Body"].read())
    retry = bool((inp.get("config") or {}).get("retry_of"))
    ids = [str(r[RETRIED_ITEM]) if retry else str(i) for i, r in enumerate(rows)]
    items = {i: (r["item"] if retry else r) for i, r in zip(ids, rows, strict=True)}
    return ids, items


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _stem(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


def item_outcomes(
    desc: dict[str, Any], ids: list[str], s3: Any, bucket: str | None
) -> tuple[set[str], set[str], set[str]]:
    """(done, failed, unaccounted) item ids of an ended execution: done has a result object, failed a
    failure record (inline: the output's records; distributed: `failures/`), unaccounted neither."""
    name = resources.execution_name(desc["executionArn"])
    out = json.loads(desc.get("output") or "null")
    done: set[str] = set()
    failed: set[str] = set()
    if bucket:
        done = {_stem(k) for k in _keys(s3, bucket, f"{resources.PREFIX_RESULTS}{name}/")}
    by_index = dict(enumerate(ids))
    if isinstance(out, dict) and isinstance(out.get("items"), list):
        for rec in out["items"]:
            if isinstance(rec, dict) and rec.get("status") != "done":
                failed.add(by_index.get(_as_index(rec.get("item_id")), str(rec.get("item_id"))))
    elif bucket:
        for key in _keys(s3, bucket, f"{resources.PREFIX_FAILURES}{name}/"):
            failed.add(by_index.get(_as_index(_stem(key)), _stem(key)))
    failed -= done  # a result written after a lost record: the item finished
    return done, failed, set(ids) - done - failed


def _as_index(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def plan_retry(
    execution_arn: str,
    *,
    sfn: Any,
    s3: Any,
    failed: bool = False,
    unaccounted: bool = False,
    items: list[str] | None = None,
    bucket: str | None = None,
    config: dict[str, Any] | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> RetryPlan:
    """The items to run again: `failed` and/or `unaccounted` ones, and the `items` named (neither flag
    nor list: both kinds). Refuses a running execution (its threads are in use) and unknown item ids."""
    from stepgraph.executions import data_bucket

    desc = sfn.describe_execution(executionArn=execution_arn)
    name = resources.execution_name(execution_arn)
    if desc["status"] == "RUNNING":
        raise ConfigError(
            f"execution {name} is still running: its items' threads are in use",
            hint="wait until it ends (stepgraph status --wait), or stop it first",
        )
    inp = json.loads(desc.get("input") or "{}")
    out = json.loads(desc.get("output") or "null")
    out = out if isinstance(out, dict) else {}
    ids, originals = _original_items(inp, s3)
    bucket = bucket or data_bucket(
        desc, out, inp.get("items_s3") or {}, sfn=sfn, endpoint_url=endpoint_url, region=region
    )
    if items:
        unknown = [i for i in items if i not in originals]
        if unknown:
            span = f"{ids[0]}..{ids[-1]}" if ids == [str(i) for i in range(len(ids))] else ", ".join(ids[:10])
            raise ConfigError(
                f"--items: {unknown[0]} is not an item of {name}",
                hint=f"its items are {span}" if ids else "it has no items",
            )
    chosen = set(items or [])
    if failed or unaccounted or not items:
        _, bad, lost = item_outcomes(desc, ids, s3, bucket)
        both = not failed and not unaccounted
        chosen |= (bad if failed or both else set()) | (lost if unaccounted or both else set())
    run_config = dict(inp.get("config") or {})
    run_config.update(config or {})
    # A retry of a retry still resumes the first execution's threads.
    run_config["retry_of"] = (inp.get("config") or {}).get("retry_of") or execution_arn
    # The merged config is checked now, before anything is read further or written.
    parse_execution_input({"graph": inp.get("graph"), "items": [None], "config": run_config})
    return RetryPlan(
        execution_arn=execution_arn,
        state_machine_arn=desc["stateMachineArn"],
        graph=str(inp.get("graph")),
        config=run_config,
        inline=inp.get("items") is not None,
        item_ids=[i for i in ids if i in chosen],
        items=originals,
        bucket=bucket,
    )


def start_retry(plan: RetryPlan, *, sfn: Any, s3: Any, name: str | None = None) -> str:
    """Start the retry execution for `plan.item_ids` and record the link; returns the new ARN."""
    from stepgraph.executions import NAME_RE

    if name is not None and not NAME_RE.match(name):
        raise ConfigError(
            f"--name {name!r} is not a valid execution name", hint="1-80 letters, digits, - or _"
        )
    original = resources.execution_name(plan.execution_arn)
    name = name or f"{original[:60]}-retry-{uuid.uuid4().hex[:8]}"
    envelopes = [retry_envelope(i, plan.items[i]) for i in plan.item_ids]
    payload: dict[str, Any] = {"graph": plan.graph, "config": plan.config}
    if plan.inline:
        payload["items"] = envelopes
    else:
        if not plan.bucket:
            raise ConfigError(
                "the data bucket is not known", hint="pass --bucket (the stack's DataBucketName)"
            )
        payload["items_s3"] = {"bucket": plan.bucket, "key": f"{resources.PREFIX_ITEMS}{name}/items.json"}
    parse_execution_input(
        payload
    )  # the config as the original had it, plus the link: checked before any write
    if not plan.inline:
        s3.put_object(
            Bucket=plan.bucket,
            Key=payload["items_s3"]["key"],
            Body=json.dumps(envelopes).encode(),
            IfNoneMatch="*",
        )
    arn = str(
        sfn.start_execution(stateMachineArn=plan.state_machine_arn, name=name, input=json.dumps(payload))[
            "executionArn"
        ]
    )
    if plan.bucket:
        link = {
            "retry_execution": arn,
            "retry_of": plan.execution_arn,
            "item_ids": plan.item_ids,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        s3.put_object(
            Bucket=plan.bucket,
            Key=f"{resources.PREFIX_RETRIES}{original}/{name}.json",
            Body=json.dumps(link).encode(),
            IfNoneMatch="*",
        )
    return arn


def retries_of(s3: Any, bucket: str, execution_arn: str) -> list[dict[str, Any]]:
    """The retries started for an execution (`stepgraph status` shows them), oldest first."""
    name = resources.execution_name(execution_arn)
    links = []
    for key in _keys(s3, bucket, f"{resources.PREFIX_RETRIES}{name}/"):
        try:
            link = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except json.JSONDecodeError:
            continue  # never written by stepgraph: not a link
        if isinstance(link, dict):
            links.append({k: link.get(k) for k in ("retry_execution", "item_ids", "started_at")})
    return sorted(links, key=lambda r: str(r.get("started_at")))
