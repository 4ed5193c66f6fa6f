"""Item results in S3 (`results/{execution}/{item}.json`), created once; never in the state machine payload.

A state's values are structured JSON: LangChain messages as langchain_core's `message_to_dict` shape
(`{"type": "ai", "data": {...}}`, read back with `messages_from_dict`), pydantic models by `model_dump`,
dataclasses as their fields; anything else JSON cannot hold as its `str`.
"""

from __future__ import annotations

import dataclasses
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
        body = json.dumps(result, default=to_jsonable, sort_keys=True).encode()
        created = put_once(self.client, self.bucket, key, body, content_type="application/json")
        if created and self.on_created is not None:
            self.on_created()
        return S3Ref(bucket=self.bucket, key=key)

    def get(self, ref: S3Ref) -> dict[str, Any]:
        return json.loads(self.client.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read())


def to_jsonable(value: Any) -> Any:
    """`json.dumps(default=...)`: a value JSON has no type for, as structured JSON."""
    from langchain_core.messages import BaseMessage, message_to_dict
    from pydantic import BaseModel

    if isinstance(value, BaseMessage):
        return message_to_dict(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
