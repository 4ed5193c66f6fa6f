"""The demo's live progress counts past one listing page (1,000 keys) with one read per refresh."""

from __future__ import annotations

import io
from typing import Any

import boto3
from moto import mock_aws
from rich.console import Console

from stepgraph.limiter.table import ensure_limiter_table
from stepgraph.local.demo_view import progress_table
from stepgraph.local.stack import LocalStack
from stepgraph.progress import RunCounters


class _Sim:
    def stats(self) -> dict[str, Any]:
        account = {"max_in_window": 3, "window_s": 60.0, "usage_usd": 0.0}
        return {"requests": 10, "rate_limited": 0, "errors_by_status": {}, "accounts": {"default": account}}


def test_progress_shows_every_item_done_past_1000_in_one_request() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ensure_limiter_table(ddb, "limiter")
        counters = RunCounters("limiter", "arn:aws:states:us-east-1:1:execution:sm:demo-big", client=ddb)
        for _ in range(3):
            counters.item_done()
        ddb.update_item(
            TableName="limiter",
            Key={"pk": {"S": "run#demo-big"}},
            UpdateExpression="ADD items_done :n",
            ExpressionAttributeValues={":n": {"N": "1497"}},
        )
        calls: list[str] = []
        ddb.meta.events.register("before-send", lambda request, **_: calls.append(request.url))
        stack = LocalStack("arn:sm", "data", "limiter", None)
        table = progress_table(stack, counters, _Sim(), 2000, "demo-big", 0.0, 20)
        out = io.StringIO()
        Console(file=out, width=120).print(table)
        assert "1500 / 2000" in out.getvalue()
        assert len(calls) == 1
