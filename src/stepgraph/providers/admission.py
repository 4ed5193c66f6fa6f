"""One attempt's admission: the tokens it reserves, its limiter slot (slept to), its budget reservation,
and what is handed back or reconciled when the attempt ends.

Token-aware: a call reserves `prompt estimate + max_tokens` (the router always sends the model's
`max_tokens`) on every token limit of its deployment (`tpm`, tokens per day); after the reply the
reservation is reconciled to the usage the provider reports. A provider that counts prompt + max
completion up front (`token_accounting: reserved`, Cerebras) keeps the completion part reserved.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from stepgraph.limiter import LimiterUnavailable

log = logging.getLogger(__name__)


# A chat template wraps every message in a few tokens of its own (role, separators), which providers
# count against their token limits; estimating content alone read low and drew 429s at a limit's edge.
TOKENS_PER_MESSAGE = 4


def prompt_tokens(messages: Any) -> int:
    """A cheap upper-ish estimate of a prompt's tokens: 4 characters a token, rounded up, plus the chat
    template's few tokens per message."""
    if isinstance(messages, str):
        return max(1, -(-len(messages) // 4)) + TOKENS_PER_MESSAGE
    parts = [str(getattr(m, "content", m)) for m in messages]
    return max(1, -(-len(" ".join(parts)) // 4)) + TOKENS_PER_MESSAGE * len(parts)


def token_costs(limiter: Any, estimate: int) -> dict[str, int] | int:
    """The costs to ask `limiter` for: 1 request on request limits, `estimate` on every token limit."""
    names = [lim.name for lim in getattr(limiter, "limits", ()) if lim.unit == "tokens"]
    return {name: estimate for name in names} if names else 1


def actual_tokens(accounting: str, prompt: int, completion: int, max_tokens: int) -> int:
    """What the provider counted against its token limits for one reply."""
    return prompt + (max_tokens if accounting == "reserved" else completion)


@dataclass
class Admission:
    """One attempt's admission: how long it waited for its slot, and (after the call) what it cost."""

    grant: Any = None
    waited_s: float = 0.0
    cost_usd: float = 0.0
    tokens_reserved: int = 0
    tokens_used: int | None = None  # set after a reply: reconciled against the reservation
    learned: dict[str, int] = field(default_factory=dict)  # learned limits in force at admission


@contextmanager
def admitted(
    route: Any, grant: Any, *, budget_guard: Any, estimate_usd: float, slot_wait: Any
) -> Iterator[Admission]:
    """The slot the pool picked (`waited_s`: how long the caller sleeps to it, `slot_wait(grant)`) and,
    for a paid model, a budget reservation; both handed
    back when the attempt ends however it ends (the reservation reconciled with the reply's cost,
    token reservations with the reported usage)."""
    admission = Admission(grant=grant)
    reservation = None
    try:
        on_attempt = getattr(budget_guard, "on_attempt", None)
        if on_attempt is not None:  # a RunGuard counts every attempt of the item, free ones too
            on_attempt()
        if grant is not None:
            tokens = [v for k, v in grant.costs.items() if _is_token_limit(route.limiter, k)]
            admission.tokens_reserved = max(tokens, default=0)
            learned = getattr(route.limiter, "learned", None)
            admission.learned = {n: ll.capacity for n, ll in learned.cached().items()} if learned else {}
            admission.waited_s = slot_wait(grant)
        if budget_guard is not None and not route.spec.free:
            reservation = budget_guard.reserve(estimate_usd)
        yield admission
    finally:
        if grant is not None:
            _release(route, grant)
            if admission.tokens_used is not None and admission.tokens_reserved:
                _reconcile(route, grant, admission.tokens_used)
        if reservation is not None:
            budget_guard.reconcile(reservation, admission.cost_usd)


def leaving(route: Any, admission: Admission, now: float) -> None:
    """The attempt leaves for the provider now: a send late after its slot moves the limiter's schedule
    back (`DynamoDBRateLimiter.sent`), so the sends paced after it keep their spacing from it."""
    sent = getattr(route.limiter, "sent", None)
    if admission.grant is None or sent is None:
        return
    try:
        if sent(admission.grant, now):
            log.debug(
                "%s %s: send %.2f s after its slot; the limiter's schedule moved back",
                route.provider,
                route.model,
                now - admission.grant.send_at,
            )
    except LimiterUnavailable as exc:
        log.warning("limiter could not move its schedule for a late send: %s", exc)


def _is_token_limit(limiter: Any, name: str) -> bool:
    return any(lim.name == name and lim.unit == "tokens" for lim in getattr(limiter, "limits", ()))


def _release(route: Any, grant: Any) -> None:
    # A lease that cannot be handed back expires on its own; failing here would hide a reply
    # that was already paid for and make the step call the provider again.
    try:
        route.limiter.release(grant)
    except LimiterUnavailable as exc:
        log.warning("limiter release failed; the lease expires by itself: %s", exc)


def _reconcile(route: Any, grant: Any, used: int) -> None:
    names = [k for k in grant.costs if _is_token_limit(route.limiter, k)]
    try:
        route.limiter.reconcile(grant, {name: used for name in names})
    except LimiterUnavailable as exc:
        log.warning("token reconcile failed; the estimate stands: %s", exc)
