"""The shapes that cross boundaries: execution input, step event, step result.

One module, used by the graph-step handler, the CLI (`stepgraph start`) and the tests.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from stepgraph import resources
from stepgraph.errors import InvalidInput

# Step Functions rejects state payloads over 256 KiB; an item must leave room for the envelope.
MAX_INLINE_ITEM_BYTES = 200_000
MAX_INLINE_MAP_CONCURRENCY = 40
DEFAULT_ROLE = "default"
ROLE_NAME = re.compile(r"[a-z][a-z0-9_\-]{0,39}")


def item_size(item: Any) -> int:
    """Bytes of an item as the state machine carries it (JSON)."""
    return len(json.dumps(item, default=str).encode())


def check_item_sizes(items: list[Any], *, where: str) -> None:
    """Every item fits a state's payload with its envelope: an oversize item is named before any item runs
    (Step Functions would end it with States.DataLimitExceeded after a provider call)."""
    for i, item in enumerate(items):
        size = item_size(item)
        if size > MAX_INLINE_ITEM_BYTES:
            raise InvalidInput(
                f"{where}[{i}]: item is {size:,} bytes, over the {MAX_INLINE_ITEM_BYTES:,}-byte limit of a "
                "Step Functions state (256 KiB with the step's envelope)",
                hint="keep large documents in S3 and put their s3:// reference in the item",
            )


def check_items_key(ref: S3Ref, *, where: str) -> None:
    """The deployed state machine may read item manifests under items/ only; local runs refuse the same."""
    if not ref.key.startswith(resources.PREFIX_ITEMS):
        raise InvalidInput(
            f"{where}: s3://{ref.bucket}/{ref.key} is outside {resources.PREFIX_ITEMS}",
            hint=f"put the manifest under s3://<data bucket>/{resources.PREFIX_ITEMS} "
            "(`stepgraph start --items FILE.jsonl` does)",
        )


class S3Ref(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1)


class RunConfig(BaseModel):
    """Per-execution settings a user may pass in the input's `config`."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | dict[str, list[str]] | None = Field(
        default=None,
        description="Model chain, first is primary, e.g. ['openai/gpt-oss-120b:free', ...]; or roles -> chains, "
        "e.g. {'default': [...], 'fast': ['pool:gpt-oss-20b']} (a node asks runtime.context.model_for('fast'))",
    )
    limits_profile: str | None = Field(
        default=None, description="Named limit profile, e.g. 'openrouter-free'"
    )
    max_concurrency: int | None = Field(default=None, ge=1, le=10_000)
    max_rounds: int | None = Field(default=None, ge=1, le=20, description="Graph-specific loop bound")
    allow_paid: bool = Field(default=True, description="Allow paid models in the chain")
    calls_per_item: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Model calls an item makes (about): sizes the history-event estimate that picks the Map",
    )
    tolerated_failure_percentage: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Distributed Map: the share of failed items that fails the whole run (default 100: never)",
    )
    review_timeout_s: int | None = Field(
        default=None,
        ge=1,
        le=31_536_000,
        description="How long an item waits for a human review before it ends as ReviewTimedOut (default 7 days)",
    )

    # Per-run guards (docs/costs.md): one execution's own spend cap and a bound on one item's calls.
    budget_usd: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="This execution's paid spend cap in USD, reserved before each paid call",
    )
    max_calls_per_item: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Provider calls (HTTP attempts) one item may make; more ends it as MaxCallsExceeded",
    )
    retry_of: str | None = Field(
        default=None,
        pattern=r"^arn:[^:]+:states:[^:]*:[^:]*:execution:[^:]+:[^:]+$",
        description="Set by `stepgraph retry`: the execution whose item threads this one resumes",
    )

    # -- roles and the graph's own settings -------------------------------------------------------
    graph_config: dict[str, Any] | None = Field(
        default=None,
        description="The user's run settings, handed to the graph in its `configurable` (beside thread_id)",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _list_or_roles(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, list | dict):
            # One clear line rather than one per member of the union.
            raise PydanticCustomError(
                "models_shape", "Input should be a valid list (the chain) or an object of role -> list"
            )
        return v

    @field_validator("models")
    @classmethod
    def _roles_named(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for role, chain in v.items():
                if not ROLE_NAME.fullmatch(role):
                    raise ValueError(f"role {role!r} must match {ROLE_NAME.pattern} (e.g. 'fast', 'writer')")
                if not chain:
                    raise ValueError(f"role {role!r} has an empty model chain")
        elif v is not None and not v:
            raise ValueError("the model chain is empty")
        return v

    def chain(self, role: str = DEFAULT_ROLE) -> list[str] | None:
        """The chain of `role` (a plain list is the default role's), or None: the table's chain."""
        if isinstance(self.models, dict):
            return self.models.get(role)
        return self.models if role == DEFAULT_ROLE else None

    def roles(self) -> list[str]:
        """Every role the run configures (the default one always)."""
        extra = sorted(r for r in self.models if r != DEFAULT_ROLE) if isinstance(self.models, dict) else []
        return [DEFAULT_ROLE, *extra]


class ExecutionInput(BaseModel):
    """`{"graph": NAME, "items": [...]}` or `{"graph": NAME, "items_s3": {"bucket", "key"}}`."""

    model_config = ConfigDict(extra="forbid")

    graph: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    items: list[Any] | None = None
    items_s3: S3Ref | None = None
    config: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _one_item_source(self) -> ExecutionInput:
        if (self.items is None) == (self.items_s3 is None):
            raise ValueError("give exactly one of 'items' (a list) or 'items_s3' ({bucket, key})")
        return self


class ReviewAnswer(BaseModel):
    """What `stepgraph resume` sends with the callback token: one value per pending interrupt id."""

    model_config = ConfigDict(extra="ignore")

    answers: dict[str, Any]
    round: int = Field(default=1, ge=1)


class ParkRequest(BaseModel):
    """The callback task's payload part: record this token beside the item's pending interrupts."""

    model_config = ConfigDict(extra="ignore")

    task_token: str = Field(min_length=1)
    review_ref: S3Ref
    entered_at: str | None = None  # when the task began: its timeout counts from here


class StepEvent(BaseModel):
    """What the state machine's ItemSelector hands to graph-step on every superstep loop."""

    model_config = ConfigDict(extra="ignore")

    execution_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1, max_length=512)
    item: Any = None
    item_ref: S3Ref | None = None
    graph: str = Field(min_length=1)
    config: RunConfig = Field(default_factory=RunConfig)
    review: ReviewAnswer | None = None  # set by the callback task once a person answered
    park: ParkRequest | None = None  # set only by the callback task itself

    @field_validator("item_id", mode="before")
    @classmethod
    def _id_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _item_present(self) -> StepEvent:
        if self.park is not None:
            return self  # the callback task carries no item: it records a token, it runs nothing
        if self.item is None and self.item_ref is None:
            raise ValueError("give 'item' or 'item_ref'")
        if self.item is not None and self.item_ref is not None:
            # Which one wins would be a guess; the state machine never sends both.
            raise ValueError("give 'item' or 'item_ref', not both")
        if self.config.retry_of is not None:
            # A retry's items are envelopes (`retry_envelope`): the step works under the original item's id.
            if not (isinstance(self.item, dict) and set(self.item) == {RETRIED_ITEM, "item"}):
                raise ValueError(f"a retry's item must be {{{RETRIED_ITEM!r}: id, 'item': ...}}")
            self.item_id, self.item = str(self.item[RETRIED_ITEM]), self.item["item"]
        return self

    @property
    def thread_id(self) -> str:
        # One LangGraph thread per (execution, item): a re-run of the same execution resumes it, and a
        # retry (`config.retry_of`) resumes the original execution's thread of the item.
        return f"{resources.execution_name(self.config.retry_of or self.execution_id)}/{self.item_id}"


RETRIED_ITEM = "retried_item_id"


def retry_envelope(item_id: str, item: Any) -> dict[str, Any]:
    """How `stepgraph retry` passes an original item: the Map numbers a retry's items 0..n-1, the envelope
    keeps the original id (the thread's, the result's and the usage records')."""
    return {RETRIED_ITEM: item_id, "item": item}


StepStatus = Literal["running", "throttled", "interrupted", "done", "failed"]


class StepResult(BaseModel):
    """Small status returned to the state machine (results themselves go to S3)."""

    status: StepStatus
    retry_after_s: int = Field(default=0, ge=0)
    steps: int = Field(default=0, ge=0)
    last_nodes: list[str] = Field(default_factory=list)
    result_ref: S3Ref | None = None
    review_ref: S3Ref | None = None  # interrupted: the pending interrupts' record (payloads stay in S3)
    error: str | None = None
    cause: str | None = None


def describe_validation_error(exc: ValidationError, *, what: str) -> str:
    """One line per problem: `<what>.<field path>: <reason>`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{what}.{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_execution_input(data: Any) -> ExecutionInput:
    try:
        return ExecutionInput.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, what="input")) from None


def parse_step_event(data: Any) -> StepEvent:
    try:
        return StepEvent.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, what="event")) from None
