"""Usage records: one per provider attempt, JSONL in S3, the same SQL on Athena and DuckDB.

Exports are lazy so `stepgraph.usage.sql` (used by the CDK app) loads without LangChain.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AttemptContext": "stepgraph.usage.attempt",
    "FanOut": "stepgraph.usage.sink",
    "ListSink": "stepgraph.usage.sink",
    "UsageSink": "stepgraph.usage.sink",
    "UsageCallbackHandler": "stepgraph.usage.callback",
    "UsageLedger": "stepgraph.usage.ledger",
    "UsageWriteError": "stepgraph.usage.ledger",
    "UsageRecord": "stepgraph.usage.record",
    "SCHEMA_VERSION": "stepgraph.usage.record",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
