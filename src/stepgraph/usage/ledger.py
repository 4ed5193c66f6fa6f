"""`UsageLedger`: buffer records in memory, flush them as JSONL objects that are never rewritten.

One object per flush and UTC day: `usage/dt=YYYY-MM-DD/{execution}/{invocation_id}[-N].jsonl[.gz]`,
written with `If-None-Match: *`. A second flush (or a name taken by another writer) gets the next
suffix, so no writer ever overwrites another's records. Used as a context manager, the ledger
flushes in `finally`: an exception or a timeout the handler sees coming loses nothing; a hard kill
of the process loses the records not yet flushed, so the runtime flushes after every attempt
(`flush_every=1`): one small PUT per model call, negligible beside the call itself.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_mod
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from stepgraph import resources, s3
from stepgraph.errors import StepGraphError
from stepgraph.usage.record import UsageRecord

Listener = Callable[[UsageRecord], None]


class UsageWriteError(StepGraphError):
    """Usage records could not be written to S3 (they stay pending for the next flush)."""


def _safe(part: str) -> str:
    # Execution ids are ARNs: keep the execution name, and nothing that breaks an S3 key.
    name = resources.execution_name(part) or "unknown"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class UsageLedger:
    """Buffers usage records and writes them as create-once JSONL objects; a `UsageSink`.

    Args:
        bucket: the S3 bucket; objects go under `prefix` (`usage/`).
        execution_id, invocation_id: name the objects (`dt=DAY/{execution}/{invocation}[-N].jsonl`).
        client: a boto3 S3 client (default: one made on first use).
        gzip: write `.jsonl.gz`.
        listeners: called with each record as it is added (e.g. the metrics emitter).
        max_attempts: object names tried per flush before giving up.
        flush_every: write after this many records (0: only on `flush()` / leaving the `with`).

    Returns (from `flush`): the keys written.

    Example:
        >>> with UsageLedger("my-bucket", execution_id="run-1", invocation_id=ctx.aws_request_id) as ledger:
        ...     model.invoke("hi", config={"callbacks": [UsageCallbackHandler(ledger)]})
    """

    def __init__(
        self,
        bucket: str,
        *,
        execution_id: str,
        invocation_id: str,
        prefix: str = resources.PREFIX_USAGE,
        client: Any = None,
        gzip: bool = False,
        listeners: Iterable[Listener] = (),
        max_attempts: int = 50,
        flush_every: int = 0,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix if prefix.endswith("/") else prefix + "/"
        self.execution_id, self.invocation_id = execution_id, invocation_id
        self.gzip = gzip
        self.listeners = list(listeners)
        self.max_attempts = max_attempts
        self.flush_every = flush_every
        self._client = client
        self._pending: list[UsageRecord] = []
        self._all: list[UsageRecord] = []
        self._lock = threading.Lock()
        self._seq = 0
        self.keys: list[str] = []

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def add(self, record: UsageRecord) -> None:
        with self._lock:
            self._pending.append(record)
            self._all.append(record)
            due = self.flush_every > 0 and len(self._pending) >= self.flush_every
        for listener in self.listeners:
            listener(record)
        if due:
            # A failed write keeps the records pending; the flush when the step ends retries and raises.
            with contextlib.suppress(UsageWriteError):
                self.flush()

    @property
    def records(self) -> list[UsageRecord]:
        with self._lock:
            return list(self._all)

    def _key(self, dt: str, seq: int) -> str:
        suffix = "" if seq == 0 else f"-{seq}"
        ext = ".jsonl.gz" if self.gzip else ".jsonl"
        return f"{self.prefix}dt={dt}/{_safe(self.execution_id)}/{_safe(self.invocation_id)}{suffix}{ext}"

    def flush(self) -> list[str]:
        """Write every record not yet written; returns the keys created (none when nothing was pending)."""
        with self._lock:
            batch, self._pending = self._pending, []
        by_day: dict[str, list[UsageRecord]] = defaultdict(list)
        for rec in batch:
            by_day[rec.dt].append(rec)
        written: list[str] = []
        done_days: set[str] = set()
        try:
            for dt, records in sorted(by_day.items()):
                body = "".join(r.model_dump_json() + "\n" for r in records).encode()
                if self.gzip:
                    body = gzip_mod.compress(body, mtime=0)
                for _ in range(self.max_attempts):
                    with self._lock:
                        seq = self._seq
                        self._seq += 1
                    key = self._key(dt, seq)
                    try:
                        created = s3.put_once(self.client, self.bucket, key, body, backoff_s=())
                    except s3.WriteBusy:
                        created = False  # another writer holds the name: never wait on it, take the next
                    if not created:
                        continue  # the name is taken: never overwrite, take the next one
                    written.append(key)
                    done_days.add(dt)
                    break
                else:
                    raise UsageWriteError(f"no free object name under s3://{self.bucket}/{self._key(dt, 0)}")
        except Exception as exc:
            with self._lock:  # keep the unwritten records so a later flush can retry them
                self._pending[:0] = [r for r in batch if r.dt not in done_days]
            if isinstance(exc, StepGraphError):
                raise
            raise UsageWriteError(
                f"usage records could not be written to s3://{self.bucket}/{self.prefix}: {exc}",
                hint="check the bucket exists and the function may s3:PutObject under usage/",
            ) from exc
        self.keys.extend(written)
        return written

    def __enter__(self) -> UsageLedger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.flush()
