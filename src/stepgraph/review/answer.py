"""List an execution's items in review and answer them (the CLI, the review page and the demo use this).

An answer first flips the record from `waiting` to `answered` with a compare-and-swap on its ETag, then
sends the callback token: of two answers to one item only one wins the swap, the other is refused. When the
token is refused (the task timed out, the execution ended) the record says so and the person is told.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from stepgraph.errors import StepGraphError
from stepgraph.review.store import (
    ANSWERED,
    PARKING,
    TIMED_OUT,
    WAITING,
    ReviewConflict,
    ReviewStore,
    effective_status,
    execution_name,
    now_iso,
    review_key,
)

DEADLINE_GRACE_S = 5.0


class NotWaiting(StepGraphError):
    """The item named is not waiting for a review (answered, timed out, never interrupted)."""


@dataclass
class Reviews:
    """One execution's reviews: `store` holds the records, `sfn` sends the answers. `ended` is the
    execution's status once it is no longer RUNNING (nothing of it waits any more, whatever a record says)."""

    execution_id: str
    store: ReviewStore
    sfn: Any
    ended: str | None = None

    def all(self) -> list[dict[str, Any]]:
        return self.store.list(self.execution_id)

    def pending(self) -> list[dict[str, Any]]:
        """Items waiting now, as rows: item, round, node(s), payload(s), waiting since, deadline."""
        if self.ended:
            return []
        return [row(r) for r in self.all() if effective_status(r) == WAITING]

    def check_running(self) -> None:
        if self.ended:
            raise NotWaiting(
                f"execution {execution_name(self.execution_id)} has ended ({self.ended}): "
                "none of its items waits for a review",
                hint="`stepgraph status <execution>` shows how it ended",
            )

    def answer(self, item_id: str, value: Any) -> dict[str, Any]:
        """Send `value` as the answer to every pending interrupt of the item; refuse a non-waiting item."""
        key = review_key(self.execution_id, str(item_id))
        found = self.store.get(key)
        name = execution_name(self.execution_id)
        if found is None:
            raise NotWaiting(
                f"item {item_id} of {name} has no review",
                hint="`stepgraph reviews <execution>` lists the items waiting",
            )
        record, etag = found
        status = effective_status(record)
        if status != WAITING:
            raise NotWaiting(_not_waiting(item_id, name, record, status))
        self.check_running()  # the record still says waiting, but the execution is over
        answers = {i["id"]: value for i in record["interrupts"]}
        now = datetime.now(UTC)
        waited = (waiting_for(record.get("waiting_since"), now) or 0.0) + float(record.get("waited_s") or 0.0)
        claimed = {
            **record,
            "status": ANSWERED,
            "answer": value,
            "answered_at": now_iso(now),
            "waited_s": round(max(waited, 0.0), 3),
        }
        try:
            self.store.put(key, claimed, if_match=etag)
        except ReviewConflict:
            raise NotWaiting(
                f"item {item_id} of {name} was answered by someone else just now", hint="nothing sent"
            ) from None
        self._send(key, claimed, record, answers, item_id=str(item_id), name=name)
        return row(claimed)

    def _send(
        self,
        key: str,
        claimed: dict[str, Any],
        before: dict[str, Any],
        answers: dict[str, Any],
        *,
        item_id: str,
        name: str,
    ) -> None:
        """Send the token; when it is not delivered, put back the record as it was before the claim."""
        from botocore.exceptions import ClientError

        output = json.dumps({"answers": answers, "round": claimed.get("round", 1)}, default=str)
        try:
            self.sfn.send_task_success(taskToken=claimed["task_token"], output=output)
        except ClientError as exc:
            self._refused(key, before, exc, item_id=item_id, name=name)
        except Exception:
            self.store.put(key, before)  # not sent (the connection failed): the item still waits
            raise

    def _refused(self, key: str, before: dict[str, Any], exc: Any, *, item_id: str, name: str) -> None:
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            self.store.put(key, before)  # a passing AWS error: the item still waits
            raise exc
        # The task's own clock may run a moment ahead of the recorded deadline.
        soon = datetime.now(UTC) + timedelta(seconds=DEADLINE_GRACE_S)
        timed_out = code == "TaskTimedOut" or effective_status(before, soon) == TIMED_OUT
        self.store.put(key, {**before, "status": TIMED_OUT if timed_out else "ended", "refused": code})
        if timed_out:
            raise NotWaiting(
                f"item {item_id} of {name}: the review timed out, the item ended as failed"
            ) from None
        raise NotWaiting(
            f"item {item_id} of {name} is no longer waiting ({code}: the execution ended or was stopped)"
        ) from None


def _not_waiting(item_id: str, name: str, record: dict[str, Any], status: str) -> str:
    where = f"item {item_id} of {name}"
    if status == ANSWERED:
        return f"{where} was already answered at {record.get('answered_at')}; an answer is applied once"
    if status == TIMED_OUT:
        return f"{where}: its review timed out at {record.get('deadline')}, the item ended as ReviewTimedOut"
    if status == PARKING:
        return f"{where} is not waiting yet (its review is being recorded); try again in a moment"
    return f"{where} is not waiting ({status})"


def row(record: dict[str, Any]) -> dict[str, Any]:
    interrupts = record.get("interrupts", [])
    return {
        "item_id": record.get("item_id"),
        "round": record.get("round"),
        "status": effective_status(record),
        "nodes": [i.get("node") for i in interrupts],
        "payloads": [i.get("value") for i in interrupts],
        "waiting_since": record.get("waiting_since"),
        "deadline": record.get("deadline"),
        "answer": record.get("answer"),
    }


def waiting_for(since: str | None, now: datetime | None = None) -> float | None:
    if not since:
        return None
    return ((now or datetime.now(UTC)) - datetime.fromisoformat(since)).total_seconds()
