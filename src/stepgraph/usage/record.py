"""The usage record: one per provider HTTP attempt (also failed and rate-limited ones).

Keys are snake_case, no column is named `date` or `timestamp` (reserved in Athena); `dt` is the
partition, taken from the object's path, not stored in the record.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GlueType:
    """The Athena/Glue column type of a field, when its Python type alone does not say it."""

    name: str


# Token counts and milliseconds outgrow Athena's 32-bit `int` in sums and long runs.
Count = Annotated[int, GlueType("bigint")]

# "incomplete": a reply cut at max_tokens (`finish_reason: length`) or with no content at all.
Status = Literal["ok", "incomplete", "error", "rate_limited", "timeout"]
CostSource = Literal["provider", "generation_api", "estimated", "free", "missing"]


class UsageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    record_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    ts: str = Field(description="ISO-8601 UTC time the attempt started")
    execution_id: str = ""
    item_id: str = ""
    thread_id: str = ""
    graph: str = ""
    node: str = ""
    attempt: int = 1
    provider: str = ""
    key_label: str = ""
    model_requested: str = ""
    model_used: str = ""
    generation_id: str = ""
    status: Status = "ok"
    http_status: int | None = None
    error_type: str = ""
    finish_reason: str = Field("", description="the provider's normalised finish_reason (stop, length, ...)")
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    reasoning_tokens: Count = 0
    cached_tokens: Count = 0
    total_tokens: Count = 0
    cost_usd: float | None = Field(
        default=None, description="USD credits; null when unknown (never a silent 0)"
    )
    cost_source: CostSource = "missing"
    is_free: bool = False
    streamed: bool = False
    latency_ms: Count = 0
    ttft_ms: Count | None = None
    limiter_wait_ms: Count = 0
    fallback: bool = False
    # The deployment of the attempt (provider + account + model) and any limit learned from the provider.
    account: str = ""
    deployment: str = Field("", description="provider:model, as a chain or pool names it")
    learned_limit: str = Field("", description="limits lowered from the provider's headers, e.g. rpm=16")
    limit_rpm: int | None = Field(None, description="the deployment's requests per minute in force")
    limit_tpm: int | None = Field(None, description="the deployment's tokens per minute in force")
    role: str = Field(
        "", description="the model role of the call (config.models mapping), e.g. default, fast"
    )

    @property
    def dt(self) -> str:
        return self.ts[:10]


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def glue_columns() -> list[tuple[str, str]]:
    """Athena/Glue column types, in record order: the one schema the DDL, the CDK table and the local
    (DuckDB) reader all use."""
    kinds = {int: "int", float: "double", bool: "boolean", str: "string"}
    out = []
    for name, field in UsageRecord.model_fields.items():
        declared = next((m.name for m in field.metadata if isinstance(m, GlueType)), None)
        ann: Any = field.annotation
        args = getattr(ann, "__args__", ())
        nested = [m.name for a in args for m in getattr(a, "__metadata__", ()) if isinstance(m, GlueType)]
        base = next((t for t in (bool, int, float, str) if ann is t or t in args), str)
        out.append((name, declared or (nested[0] if nested else kinds[base])))
    return out
