"""How many history events a batch costs in one execution, so validate-input sends a batch to the inline
Map only when it fits the execution's 25,000 events with room to spare (DESIGN §6).

Counted on an independent interpreter and on the local endpoint: about 15 events per execution, 11 per
item at least (its Map iteration and first Step), 7 per further Step call, 9 per throttled loop (Step and
Wait), 3 per Lambda retry. A throttled loop happens when a limit refuses a call: while a sliding limit
binds, each granted slot is fought over by the items in flight, so a call waits through up to one refusal
per other item in flight; a daily cap adds a wake-up per waiting item per UTC day it has to wait. The
estimate errs high on purpose: a test runs local batches and fails if it ever counts fewer events than
really happened."""

from __future__ import annotations

import math
from dataclasses import dataclass

from stepgraph.limiter.limits import Limit

HISTORY_LIMIT = 25_000  # events per execution, a hard limit of Step Functions
INLINE_BUDGET = 20_000  # what an inline batch may plan to use: the rest covers faults and retries
EVENTS_PER_EXECUTION = 15
EVENTS_PER_ITEM = 11
EVENTS_PER_STEP = 7
EVENTS_PER_THROTTLE = 9
EVENTS_PER_LAMBDA_RETRY = 3
# Model calls per item when the input's config does not say (five is a draft-critique-revise graph).
DEFAULT_CALLS_PER_ITEM = 5
# Share of Step calls that Step Functions retries (Lambda service errors, checkpoint conflicts).
RETRY_SHARE = 0.1
INLINE_MAX_ITEMS = 10_000  # beyond this the Distributed Map is the only sensible choice anyway


@dataclass(frozen=True)
class BatchShape:
    items: int
    calls_per_item: int
    concurrency: int
    limits: tuple[Limit, ...] = ()


def throttled_loops(shape: BatchShape) -> float:
    calls = shape.items * shape.calls_per_item
    in_flight = max(1, min(shape.concurrency, shape.items))
    loops = 0.0
    for lim in shape.limits:
        if lim.unit == "tokens":
            continue
        if lim.kind == "sliding" and calls > lim.capacity:
            loops = max(loops, calls * in_flight)  # up to a refusal per item in flight, per call
        elif lim.kind == "utc_day" and calls > lim.capacity:
            days = math.ceil(calls / lim.capacity) - 1
            loops += days * in_flight * 2  # each waiting item wakes at the day's end, and may lose once
        elif lim.kind == "concurrency" and in_flight > lim.capacity:
            loops = max(loops, calls * (in_flight - lim.capacity))
    return loops


def estimated_events(shape: BatchShape) -> int:
    steps = shape.items * shape.calls_per_item  # at most one Step call per model call beyond the first
    loops = throttled_loops(shape)
    total = (
        EVENTS_PER_EXECUTION
        + shape.items * EVENTS_PER_ITEM
        + steps * EVENTS_PER_STEP
        + loops * EVENTS_PER_THROTTLE
        + (steps + loops) * RETRY_SHARE * EVENTS_PER_LAMBDA_RETRY
    )
    return math.ceil(total)


def fits_inline(shape: BatchShape) -> bool:
    return shape.items <= INLINE_MAX_ITEMS and estimated_events(shape) <= INLINE_BUDGET
