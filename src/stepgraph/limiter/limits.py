"""Limits, grants and the limiter's typed errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from stepgraph.errors import ConfigError, StepGraphError

LimitKind = Literal["sliding", "utc_day", "concurrency"]
KINDS: tuple[str, ...] = ("sliding", "utc_day", "concurrency")
LimitUnit = Literal["requests", "tokens"]
UNITS: tuple[str, ...] = ("requests", "tokens")


@dataclass(frozen=True)
class Limit:
    """`sliding`: at most `capacity` units in every window of `per_seconds`;
    `utc_day`: at most `capacity` per UTC calendar day (`per_seconds` ignored unless under 86,400:
    a time-scaled local run's shorter day);
    `concurrency`: at most `capacity` held at once, leases expire after `per_seconds`.

    `unit` says what `capacity` counts: `requests` (a plain `try_acquire()` costs 1) or `tokens` (costs
    only what the caller estimates for it, e.g. `try_acquire({"rpm": 1, "tpm": 1200})`)."""

    name: str
    capacity: int
    per_seconds: float
    kind: LimitKind = "sliding"
    unit: LimitUnit = "requests"

    def __post_init__(self) -> None:
        if not self.name or "#" in self.name:
            raise ConfigError(f"limit name {self.name!r} must be non-empty and contain no '#'")
        if not isinstance(self.capacity, int) or self.capacity <= 0:
            raise ConfigError(
                f"limit {self.name!r}: capacity must be a whole number > 0 (got {self.capacity!r})"
            )
        if self.kind not in KINDS:
            raise ConfigError(
                f"limit {self.name!r}: kind must be one of {', '.join(KINDS)} (got {self.kind!r})"
            )
        if self.unit not in UNITS:
            raise ConfigError(
                f"limit {self.name!r}: unit must be one of {', '.join(UNITS)} (got {self.unit!r})"
            )
        if self.kind != "utc_day" and not self.per_seconds > 0:
            raise ConfigError(f"limit {self.name!r}: per_seconds must be > 0 (got {self.per_seconds!r})")


@dataclass
class Grant:
    """`granted`: the slot is reserved; send after `wait_s`. Refused: retry no sooner than `wait_s`;
    `refused_by` names the limit that refused."""

    granted: bool
    wait_s: float = 0.0
    lease_id: str | None = None
    costs: dict[str, int] = field(default_factory=dict)
    refused_by: str | None = None
    day: str | None = None  # the UTC day whose counters were charged (for reconcile)
    send_at: float = 0.0  # epoch seconds of the reserved slot (granted) = decision time + wait_s


class RateLimited(StepGraphError):
    """The next slot is further away than the caller may wait: come back after `retry_after_s`."""

    def __init__(self, retry_after_s: float, *, limit: str | None = None, key: str | None = None) -> None:
        self.retry_after_s = retry_after_s
        self.until = time.monotonic() + max(0.0, retry_after_s)  # as `Throttled.until`
        self.limit = limit
        super().__init__(
            f"rate limit {limit or '?'} of {key or '?'} is full for {retry_after_s:.2f} s",
            hint="retry after that; the state machine waits for free",
        )


class LimiterUnavailable(StepGraphError):
    """DynamoDB kept failing: the limiter fails closed and grants nothing."""
