"""Where a thread lives in S3 and how its objects are (de)serialised — shared by the sync and async paths.

    {prefix}{thread}/{ns}/c/{inverted checkpoint id}      one object per checkpoint (state + metadata)
    {prefix}{thread}/{ns}/w/{checkpoint id}/{task id}.w   the regular writes of one task (created once)
    {prefix}{thread}/{ns}/w/{checkpoint id}/{task id}.s{n} a special write (error, interrupt, …; replaced)

Checkpoint ids are time-ordered (uuid6), so their inverted form sorts newest first: "latest" is one
ListObjectsV2 with MaxKeys=1. Thread ids and namespaces are percent-encoded into one path segment.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, unquote

from langgraph.checkpoint.serde.base import SerializerProtocol

from stepgraph.errors import StepGraphError

_INVERT = str.maketrans("0123456789abcdef", "fedcba9876543210")
EMPTY_NS = "_"


class CheckpointStoreError(StepGraphError):
    """S3 refused a checkpoint read or write (missing bucket, no permission)."""


class CorruptCheckpoint(StepGraphError):
    """A checkpoint object cannot be decoded."""


class CheckpointConflict(StepGraphError):
    """Another writer saved this step with other content (or S3 kept answering 409)."""


def invert(checkpoint_id: str) -> str:
    return checkpoint_id.lower().translate(_INVERT)


def segment(value: str) -> str:
    return quote(value, safe="") if value else EMPTY_NS


def unsegment(value: str) -> str:
    return "" if value == EMPTY_NS else unquote(value)


class Layout:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"

    def thread(self, thread_id: str) -> str:
        return f"{self.prefix}{segment(thread_id)}/"

    def ns(self, thread_id: str, ns: str) -> str:
        return f"{self.thread(thread_id)}{segment(ns)}/"

    def checkpoints(self, thread_id: str, ns: str) -> str:
        return f"{self.ns(thread_id, ns)}c/"

    def checkpoint(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self.checkpoints(thread_id, ns)}{invert(checkpoint_id)}"

    def writes(self, thread_id: str, ns: str, checkpoint_id: str) -> str:
        return f"{self.ns(thread_id, ns)}w/{checkpoint_id}/"

    def parse_checkpoint_key(self, key: str) -> tuple[str, str, str]:
        """thread id, namespace, checkpoint id."""
        thread, ns, _, inv = key[len(self.prefix) :].split("/")
        return unsegment(thread), unsegment(ns), invert(inv)


def _typed(serde: SerializerProtocol, value: Any) -> list[str]:
    kind, data = serde.dumps_typed(value)
    return [kind, base64.b64encode(data).decode()]


def _untyped(serde: SerializerProtocol, pair: list[str]) -> Any:
    return serde.loads_typed((pair[0], base64.b64decode(pair[1])))


SCHEMA_VERSION = 1


def _body(what: str, key: str, raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptCheckpoint(
            f"{what} object {key} is not JSON ({exc})",
            hint="delete or restore that object; the thread resumes from the previous checkpoint",
        ) from None
    version = body.get("v") if isinstance(body, dict) else None
    if version != SCHEMA_VERSION:
        # Reading another layout as ours would hand LangGraph wrong state without any error.
        raise CorruptCheckpoint(
            f"{what} object {key} has schema version {version!r}; this stepgraph reads version {SCHEMA_VERSION}",
            hint="run the stepgraph version that wrote it, or delete the thread and start it again",
        )
    return body


def dump_checkpoint(
    serde: SerializerProtocol, checkpoint: Any, metadata: Any, parent_id: str | None
) -> bytes:
    body = {
        "v": SCHEMA_VERSION,
        "checkpoint": _typed(serde, checkpoint),
        "metadata": _typed(serde, metadata),
        "parent": parent_id,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def load_checkpoint(serde: SerializerProtocol, key: str, raw: bytes) -> tuple[Any, Any, str | None]:
    body = _body("checkpoint", key, raw)
    try:
        return _untyped(serde, body["checkpoint"]), _untyped(serde, body["metadata"]), body.get("parent")
    except Exception as exc:
        raise CorruptCheckpoint(
            f"checkpoint object {key} cannot be read ({type(exc).__name__}: {exc})",
            hint="delete or restore that object; the thread resumes from the previous checkpoint",
        ) from None


def dump_writes(
    serde: SerializerProtocol, task_id: str, task_path: str, writes: list[tuple[int, str, Any]]
) -> bytes:
    items = [[idx, channel, _typed(serde, value)] for idx, channel, value in writes]
    return json.dumps(
        {"v": SCHEMA_VERSION, "task_id": task_id, "task_path": task_path, "writes": items}
    ).encode()


def load_writes(
    serde: SerializerProtocol, key: str, raw: bytes
) -> tuple[str, str, list[tuple[int, str, Any]]]:
    body = _body("writes", key, raw)
    try:
        return body["task_id"], body["task_path"], [(i, c, _untyped(serde, v)) for i, c, v in body["writes"]]
    except Exception as exc:
        raise CorruptCheckpoint(f"writes object {key} cannot be read ({type(exc).__name__}: {exc})") from None
