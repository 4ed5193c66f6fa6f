"""Where usage records go: anything with `add(record)`.

`UsageLedger` is the sink the runtime uses (it buffers and writes JSONL to S3, then tells its listeners);
tests collect records in a `ListSink`; a per-execution spend counter can be one more sink in a `FanOut`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from stepgraph.usage.record import UsageRecord


@runtime_checkable
class UsageSink(Protocol):
    def add(self, record: UsageRecord) -> None: ...


class ListSink:
    """Keeps every record in memory (tests, and users who want the records back)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def add(self, record: UsageRecord) -> None:
        self.records.append(record)


class FanOut:
    """Hands each record to every sink, in order."""

    def __init__(self, *sinks: UsageSink) -> None:
        self.sinks = list(sinks)

    def add(self, record: UsageRecord) -> None:
        for sink in self.sinks:
            sink.add(record)
