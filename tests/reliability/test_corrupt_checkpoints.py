"""Corrupt checkpoint objects, row by row (truncated, not JSON, not msgpack, another schema version, missing
fields, an object gone while read): S3Saver raises one typed error naming the object, LangGraph and the async
path see the same error rather than an empty thread, nothing is rewritten, and other threads read on."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from stepgraph.checkpoint import CheckpointStoreError, CorruptCheckpoint, S3Saver
from stepgraph.errors import StepGraphError
from tests.fixtures.bad_input import DROP, assert_clear, build_echo_graph, cfg, drop, objects


def not_msgpack(body: dict[str, Any], raw: bytes) -> bytes:
    garbage = ["msgpack", base64.b64encode(b"\xc1\xc1\xc1\xc1").decode()]  # 0xc1: never valid msgpack
    if "checkpoint" in body:
        body["checkpoint"] = garbage
    else:
        body["writes"][0][2] = garbage
    return json.dumps(body).encode()


def edit(**changes: Any) -> Callable[[dict[str, Any], bytes], bytes]:
    return lambda body, raw: json.dumps(drop({**body, **changes})).encode()


class Vanishing:
    """An S3 client on which one listed object is gone by the time it is read (a concurrent delete)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client, self.key = client, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"] == self.key:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        return self.client.get_object(**kwargs)


VANISH = object()

CHECKPOINT_ROWS = [
    ("checkpoint truncated", "checkpoint", lambda b, raw: raw[: len(raw) // 2], CorruptCheckpoint, "is not JSON"),
    ("checkpoint not JSON", "checkpoint", lambda b, raw: b"\x89PNG\r\n" + raw, CorruptCheckpoint, "is not JSON"),
    ("checkpoint not msgpack", "checkpoint", not_msgpack, CorruptCheckpoint, "cannot be read"),
    ("checkpoint version 2", "checkpoint", edit(v=2), CorruptCheckpoint, "has schema version 2; this stepgraph reads version 1"),
    ("checkpoint no version", "checkpoint", edit(v=DROP), CorruptCheckpoint, "has schema version None"),
    ("checkpoint no metadata", "checkpoint", edit(metadata=DROP), CorruptCheckpoint, r"cannot be read \(KeyError: 'metadata'\)"),
    ("writes truncated", "writes", lambda b, raw: raw[:-9], CorruptCheckpoint, "is not JSON"),
    ("writes not msgpack", "writes", not_msgpack, CorruptCheckpoint, "cannot be read"),
    ("writes version 2", "writes", edit(v=2), CorruptCheckpoint, "has schema version 2"),
    ("writes object gone", "writes", VANISH, CheckpointStoreError, "disappeared while it was read"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "mutate", "error", "match"), [pytest.param(*r[1:], id=r[0]) for r in CHECKPOINT_ROWS]
)
def test_corrupt_checkpoint_object(
    s3_client: Any, s3_bucket: str, target: str, mutate: Any, error: type, match: str
) -> None:
    saver = S3Saver(s3_bucket, client=s3_client)
    build_echo_graph().compile(checkpointer=saver).invoke({"text": "fine"}, cfg("good"))
    with pytest.raises(RuntimeError, match="node c failed"):  # leaves c's error pending on "bad"
        build_echo_graph(fail=True).compile(checkpointer=saver).invoke({"text": "x"}, cfg("bad"))
    good_history = [t.checkpoint["id"] for t in saver.list(cfg("good"))]
    newest = saver.s3.keys(saver.layout.checkpoints("bad", ""), limit=1)[0]
    writes = saver.s3.keys(saver.layout.writes("bad", "", saver.layout.parse_checkpoint_key(newest)[2]))
    key = newest if target == "checkpoint" else writes[0]
    reader = saver
    if mutate is VANISH:
        reader = S3Saver(s3_bucket, client=Vanishing(s3_client, key))
    else:
        raw = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=mutate(json.loads(raw), raw))
    before = objects(s3_client, s3_bucket)

    with pytest.raises(StepGraphError) as info:
        reader.get_tuple(cfg("bad"))
    assert type(info.value) is error and re.search(match, str(info.value)), str(info.value)
    assert key in str(info.value)
    assert_clear(info.value)
    # LangGraph and the async path see the same error, never an empty thread they would start over.
    graph = build_echo_graph().compile(checkpointer=reader)
    for attempt in (
        lambda: graph.get_state(cfg("bad")),
        lambda: graph.invoke(None, cfg("bad")),
        lambda: asyncio.run(reader.aget_tuple(cfg("bad"))),
    ):
        with pytest.raises(error, match=re.escape(key)):
            attempt()
    assert objects(s3_client, s3_bucket) == before  # reading never rewrites anything
    good = reader.get_tuple(cfg("good"))
    assert good is not None and sorted(good.checkpoint["channel_values"]["notes"]) == ["a", "b", "c"]
    assert [t.checkpoint["id"] for t in reader.list(cfg("good"))] == good_history
