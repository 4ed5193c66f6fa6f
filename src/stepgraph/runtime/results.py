"""Item results in S3 (`results/{execution}/{item}.json`), created once; never in the state machine payload."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from stepgraph import resources
from stepgraph.s3 import put_once
from stepgraph.schemas import S3Ref


class ResultStore:
    def __init__(
        self,
        bucket: str,
        client: Any,
        prefix: str = resources.PREFIX_RESULTS,
        *,
        on_created: Callable[[], None] | None = None,
    ) -> None:
        self.bucket, self.client, self.prefix = bucket, client, prefix
        self.on_created = on_created  # called once per item, when its result is first written

    def key(self, execution_id: str, item_id: str) -> str:
        return f"{self.prefix}{resources.execution_name(execution_id)}/{item_id}.json"

    def put(self, execution_id: str, item_id: str, result: dict[str, Any]) -> S3Ref:
        """Write once: a re-run that reaches the end again finds the object there and keeps it."""
        key = self.key(execution_id, item_id)
        body = json.dumps(result, default=str, sort_keys=True).encode()
        created = put_once(self.client, self.bucket, key, body, content_type="application/json")
        if created and self.on_created is not None:
            self.on_created()
        return S3Ref(bucket=self.bucket, key=key)

    def get(self, ref: S3Ref) -> dict[str, Any]:
        return json.loads(self.client.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read())
