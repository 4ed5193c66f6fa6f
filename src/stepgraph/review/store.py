"""The review record: `reviews/{execution name}/{item_id}.json`, one per item, rewritten each round.

Why S3 and not a DynamoDB item: the record sits beside the item's checkpoints and results in the one data
bucket the stack already has, its payloads can be as large as an S3 object (a DynamoDB item stops at 400 KB),
and S3's conditional writes (`If-Match` on the ETag) give the compare-and-swap an answer needs, so two
answers to one item cannot both win. Listing one execution's reviews is one prefix listing.

Lifecycle of one round: graph-step writes `parking` (the interrupts, no token yet); the callback task's
invocation adds the task token and the deadline (`waiting`); an answer flips it to `answered` before the
token is sent; a deadline passed reads as `timed_out`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from stepgraph import resources
from stepgraph.errors import StepGraphError
from stepgraph.schemas import S3Ref

PARKING, WAITING, ANSWERED, TIMED_OUT = "parking", "waiting", "answered", "timed_out"
_CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class ReviewConflict(StepGraphError):
    """The record changed between reading and writing it (another answer, or a new round)."""

    code = "StepGraph.ReviewConflict"


def execution_name(execution_id: str) -> str:
    return execution_id.rsplit(":", 1)[-1]


def review_key(execution_id: str, item_id: str) -> str:
    return f"{resources.PREFIX_REVIEWS}{execution_name(execution_id)}/{item_id}.json"


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).isoformat(timespec="milliseconds")


def effective_status(record: dict[str, Any], now: datetime | None = None) -> str:
    """`waiting` past its deadline is `timed_out`, whether or not anything wrote that down yet."""
    status = str(record.get("status"))
    deadline = record.get("deadline")
    if status == WAITING and deadline and datetime.fromisoformat(deadline) <= (now or datetime.now(UTC)):
        return TIMED_OUT
    return status


class ReviewStore:
    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket, self.client = bucket, client

    def get(self, key: str) -> tuple[dict[str, Any], str] | None:
        """The record and its ETag, or None when there is none."""
        from botocore.exceptions import ClientError

        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return json.loads(obj["Body"].read()), str(obj["ETag"])

    def put(self, key: str, record: dict[str, Any], *, if_match: str | None = None) -> None:
        from botocore.exceptions import ClientError

        extra = {"IfMatch": if_match} if if_match else {}
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(record, default=str, sort_keys=True).encode(),
                ContentType="application/json",
                **extra,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _CONFLICT:
                raise ReviewConflict(f"s3://{self.bucket}/{key} changed while it was written") from None
            raise

    def record_interrupts(
        self, execution_id: str, item_id: str, graph: str, interrupts: list[dict[str, Any]]
    ) -> S3Ref:
        """graph-step: the item stopped at these interrupts. A repeat of the same interrupts (a retried
        step) keeps its round; new ones start the next round."""
        key = review_key(execution_id, item_id)
        found = self.get(key)
        ids = [i["id"] for i in interrupts]
        round_ = 1
        if found:
            old = found[0]
            same = [i["id"] for i in old.get("interrupts", [])] == ids
            if same and old.get("status") == WAITING:
                return S3Ref(bucket=self.bucket, key=key)  # already parked: keep the token
            round_ = int(old.get("round", 0)) + (0 if same else 1)
        record = {
            "execution_id": execution_id,
            "item_id": item_id,
            "graph": graph,
            "round": round_,
            "status": PARKING,
            "interrupts": interrupts,
            "recorded_at": now_iso(),
        }
        self.put(key, record)
        return S3Ref(bucket=self.bucket, key=key)

    def park(self, key: str, task_token: str, timeout_s: int, now: datetime | None = None) -> dict[str, Any]:
        """The callback task: keep its token with the pending interrupts; the item now waits."""
        found = self.get(key)
        if found is None:
            raise StepGraphError(f"s3://{self.bucket}/{key}: no review record to park on")
        record, etag = found
        now = now or datetime.now(UTC)
        record.update(
            status=WAITING,
            task_token=task_token,
            waiting_since=now_iso(now),
            deadline=now_iso(now + timedelta(seconds=timeout_s)),
        )
        self.put(key, record, if_match=etag)
        return record

    def list(self, execution_id: str) -> list[dict[str, Any]]:
        prefix = f"{resources.PREFIX_REVIEWS}{execution_name(execution_id)}/"
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                found = self.get(obj["Key"])
                if found:
                    out.append(found[0])
        return sorted(out, key=lambda r: _sort_key(str(r.get("item_id"))))


def _sort_key(item_id: str) -> tuple[int, int | str]:
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)
