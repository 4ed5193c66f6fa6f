"""`S3Saver`: a LangGraph checkpointer on S3 with conditional writes.

Checkpoints and task writes are created with `If-None-Match: *`, so nothing is ever overwritten: a
re-run that writes the same bytes is a no-op, a different writer gets `CheckpointConflict`. Special
writes (error, interrupt, resume) are replaced, as LangGraph's own savers do. The async methods run
the blocking S3 calls in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from stepgraph import resources
from stepgraph.checkpoint import layout as L
from stepgraph.checkpoint.s3 import S3Objects

_Keys = list[str]  # the class defines `list`, which shadows the builtin in annotations


class S3Saver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer on S3: every checkpoint and every task's writes is its own object,
    created once (`If-None-Match: *`), so a crashed or duplicated step never overwrites saved work.

    Args:
        bucket: the S3 bucket.
        prefix: where threads live in it (`checkpoints/` by default).
        client: a boto3 S3 client (default: one made on first use).
        serde: LangGraph's serializer (default: its JsonPlusSerializer).

    Returns (from `get_tuple`): the thread's newest checkpoint with its pending writes, or None.

    Example:
        >>> graph = builder.compile(checkpointer=S3Saver("my-bucket", client=boto3.client("s3")))
        >>> graph.invoke({"text": "hi"}, {"configurable": {"thread_id": "run-1/item-7"}})
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = resources.PREFIX_CHECKPOINTS,
        client: Any = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.bucket = bucket
        self.layout = L.Layout(prefix)
        self.s3 = S3Objects(bucket, self.layout.prefix, client)

    # -- reading -------------------------------------------------------------------------------
    def _tuple(self, thread_id: str, ns: str, checkpoint_id: str, raw: bytes, key: str) -> CheckpointTuple:
        checkpoint, metadata, parent = L.load_checkpoint(self.serde, key, raw)
        writes = []
        for wkey in self.s3.keys(self.layout.writes(thread_id, ns, checkpoint_id)):
            raw_writes = self.s3.get(wkey)
            if raw_writes is None:
                # Listed a moment ago: deleted meanwhile (delete_thread, prune). Reading on would
                # return the checkpoint without that task's writes and re-run the task.
                raise L.CheckpointStoreError(
                    f"writes object {wkey} of checkpoint {key} disappeared while it was read",
                    hint="retry; if it persists, delete the thread and start it again",
                )
            task_id, task_path, items = L.load_writes(self.serde, wkey, raw_writes)
            writes += [(task_path, task_id, idx, channel, value) for idx, channel, value in items]
        writes.sort(key=lambda w: writes_sort_key(w[0], w[1], w[2]))

        def cfg(cid: str) -> RunnableConfig:
            return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": cid}}

        return CheckpointTuple(
            config=cfg(checkpoint_id),
            checkpoint=checkpoint,
            metadata=metadata,
            parent_config=cfg(parent) if parent else None,
            pending_writes=[(task_id, channel, value) for _, task_id, _, channel, value in writes],
        )

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id:
            key = self.layout.checkpoint(thread_id, ns, checkpoint_id)
        else:
            newest = self.s3.keys(self.layout.checkpoints(thread_id, ns), limit=1)
            if not newest:
                return None
            key = newest[0]
            checkpoint_id = self.layout.parse_checkpoint_key(key)[2]
        raw = self.s3.get(key)
        return None if raw is None else self._tuple(thread_id, ns, checkpoint_id, raw, key)

    def _namespaces(self, thread_id: str) -> _Keys:
        return [
            L.unsegment(p.rstrip("/").rsplit("/", 1)[-1])
            for p in self.s3.folders(self.layout.thread(thread_id))
        ]

    def _threads(self) -> _Keys:
        return [L.unsegment(p.rstrip("/").rsplit("/", 1)[-1]) for p in self.s3.folders(self.layout.prefix)]

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        conf = (config or {}).get("configurable", {})
        threads = [str(conf["thread_id"])] if conf.get("thread_id") is not None else self._threads()
        wanted_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        remaining = limit
        for thread_id in threads:
            namespaces = [conf["checkpoint_ns"]] if "checkpoint_ns" in conf else self._namespaces(thread_id)
            for ns in namespaces:
                for key in self.s3.keys(self.layout.checkpoints(thread_id, ns)):
                    cid = self.layout.parse_checkpoint_key(key)[2]
                    if (wanted_id and cid != wanted_id) or (before_id and cid >= before_id):
                        continue
                    raw = self.s3.get(key)
                    if raw is None:
                        continue  # deleted while we listed
                    tup = self._tuple(thread_id, ns, cid, raw, key)
                    if filter and any(tup.metadata.get(k) != v for k, v in filter.items()):
                        continue
                    yield tup
                    if remaining is not None:
                        remaining -= 1
                        if remaining <= 0:
                            return

    # -- writing -------------------------------------------------------------------------------
    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        parent = config["configurable"].get("checkpoint_id")
        body = L.dump_checkpoint(self.serde, checkpoint, get_checkpoint_metadata(config, metadata), parent)
        self.s3.create(self.layout.checkpoint(thread_id, ns, checkpoint["id"]), body)
        return {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}
        }

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        thread_id = str(config["configurable"]["thread_id"])
        ns = config["configurable"].get("checkpoint_ns", "")
        base = self.layout.writes(thread_id, ns, config["configurable"]["checkpoint_id"])
        regular = [(idx, c, v) for idx, (c, v) in enumerate(writes) if c not in WRITES_IDX_MAP]
        if regular:
            # First writer wins (as in LangGraph's savers); the same bytes again is a no-op.
            self.s3.create(
                f"{base}{L.segment(task_id)}.w",
                L.dump_writes(self.serde, task_id, task_path, regular),
                first_wins=True,
            )
        for c, v in writes:
            if c in WRITES_IDX_MAP:
                idx = WRITES_IDX_MAP[c]
                body = L.dump_writes(self.serde, task_id, task_path, [(idx, c, v)])
                self.s3.replace(f"{base}{L.segment(task_id)}.s{-idx}", body)

    # -- deleting and copying ------------------------------------------------------------------
    def delete_thread(self, thread_id: str) -> None:
        self.s3.delete(self.s3.keys(self.layout.thread(thread_id)))

    def _checkpoint_keys(self, thread_id: str) -> _Keys:
        return [k for k in self.s3.keys(self.layout.thread(thread_id)) if "/c/" in k]

    def _delete_checkpoints(self, keys: _Keys) -> None:
        doomed = []
        for key in keys:
            thread_id, ns, cid = self.layout.parse_checkpoint_key(key)
            doomed.append(key)
            doomed += self.s3.keys(self.layout.writes(thread_id, ns, cid))
        self.s3.delete(doomed)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        runs = set(run_ids)
        if not runs:
            return
        doomed = []
        for thread_id in self._threads():
            for key in self._checkpoint_keys(thread_id):
                raw = self.s3.get(key)
                if raw is not None and L.load_checkpoint(self.serde, key, raw)[1].get("run_id") in runs:
                    doomed.append(key)
        self._delete_checkpoints(doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        src = self.layout.thread(source_thread_id)
        dst = self.layout.thread(target_thread_id)
        for key in self.s3.keys(src):
            self.s3.copy(key, dst + key[len(src) :])

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r} (use keep_latest or delete)")
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            for ns in self._namespaces(thread_id):
                keys = self.s3.keys(self.layout.checkpoints(thread_id, ns))
                self._delete_checkpoints(keys[1:])  # newest first: keep the first

    # -- async twins: the same calls in worker threads ------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)

    def get_next_version(self, current: str | None, channel: None) -> str:
        # Same scheme as LangGraph's savers: a zero-padded counter plus a random tail.
        import random

        major = 1 if current is None else int(str(current).split(".")[0]) + 1
        return f"{major:032}.{random.random():016}"
