"""The review record: `reviews/{execution name}/{item_id}.json`, one per item, rewritten each round.

Why S3 and not a DynamoDB item: the record sits beside the item's checkpoints and results in the one data
bucket the stack already has, its payloads can be as large as an S3 object (a DynamoDB item stops at 400 KB),
and S3's conditional writes (`If-Match` on the ETag) give the compare-and-swap an answer needs, so two
answers to one item cannot both win. Listing one execution's reviews is one prefix listing.

Lifecycle of one round: graph-step writes `parking` (the interrupts, no token yet); the callback task's
invocation adds the task token and the deadline (`waiting`); an answer flips it to `answered` before the
token is sent; a deadline passed reads as `timed_out`. `waited_s` adds up each answered round's wait
(answered_at - waiting_since); the item's result keeps it under `review`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from stepgraph import resources
from stepgraph import s3 as s3util
from stepgraph.errors import StepGraphError
from stepgraph.schemas import S3Ref

PARKING, WAITING, ANSWERED, TIMED_OUT = "parking", "waiting", "answered", "timed_out"


class ReviewConflict(StepGraphError):
    """The record changed between reading and writing it (another answer, or a new round)."""


execution_name = resources.execution_name


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
        try:
            with s3util.mapped(self.bucket, key):
                obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except s3util.NoSuchObject:
            return None
        return json.loads(obj["Body"].read()), str(obj["ETag"])

    def put(self, key: str, record: dict[str, Any], *, if_match: str | None = None) -> None:
        """Write the record; with `if_match`, only over the version read (a compare-and-swap)."""
        extra = {"IfMatch": if_match} if if_match else {}
        try:
            with s3util.mapped(self.bucket, key):
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=json.dumps(record, default=str, sort_keys=True).encode(),
                    ContentType="application/json",
                    **extra,
                )
        except (s3util.ObjectExists, s3util.WriteBusy):  # 412: another write won; 409: one in flight
            raise ReviewConflict(f"s3://{self.bucket}/{key} changed while it was written") from None

    def record_interrupts(
        self, execution_id: str, item_id: str, graph: str, interrupts: list[dict[str, Any]]
    ) -> S3Ref:
        """graph-step: the item stopped at these interrupts. A repeat of the same interrupts (a retried
        step) keeps its round; new ones start the next round."""
        key = review_key(execution_id, item_id)
        found = self.get(key)
        ids = [i["id"] for i in interrupts]
        round_, waited_s = 1, 0.0
        if found:
            old = found[0]
            waited_s = float(old.get("waited_s") or 0.0)
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
            "waited_s": waited_s,  # in review so far, over the earlier rounds
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

    def summary(self, execution_id: str, item_id: str) -> dict[str, Any] | None:
        """What the item's result keeps of its reviews: rounds answered and the time spent waiting."""
        found = self.get(review_key(execution_id, item_id))
        if found is None:
            return None
        record = found[0]
        return {
            "rounds": int(record.get("round") or 0),
            "waited_s": round(float(record.get("waited_s") or 0.0), 3),
            "answered_at": record.get("answered_at"),
        }

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
