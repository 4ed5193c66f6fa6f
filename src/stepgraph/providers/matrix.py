"""The router's error matrix as data: `classify(exception) -> Action`, first matching row wins.

| outcome                                   | action          | what the router does                               |
|-------------------------------------------|-----------------|----------------------------------------------------|
| not a provider error (e.g. BudgetExceeded)| `RAISE`         | propagates (typed stop)                            |
| 429                                       | `WAIT`          | wait Retry-After / X-RateLimit-Reset if it fits, else `Throttled` |
| 402 in-flight budget (Retry-After)        | `WAIT`          | transient: wait and retry                          |
| 402                                       | `PAID_OFF`      | paid models off for the run (free continue), next model |
| 401                                       | `ROTATE_KEY`    | retire the key, use the account's next key; none left: fatal |
| 400 context length exceeded               | `NEXT_MODEL`    | the next model (a larger context comes later)      |
| 400 / 403                                 | `FATAL`         | `ProviderFatal` at once (no retry, no fallback)    |
| 404 no endpoint                           | `NEXT_MODEL`    | the next model                                     |
| 408, 5xx, timeout, connection, stream error | `RETRY`       | bounded retries with jitter, then the next model   |

Before any call the router also throttles on its own: a limiter slot further than the step's budget, or
a step whose time is nearly spent, ends the step as `Throttled` (the state machine waits).

A new provider shape is one more `Rule` (put it above the row it refines) and, for a new kind of
handling, one more `Action` with its handler in the router's table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Action(enum.Enum):
    RAISE = "raise"
    WAIT = "wait"
    PAID_OFF = "paid_off"
    ROTATE_KEY = "rotate_key"
    NEXT_MODEL = "next_model"
    FATAL = "fatal"
    RETRY = "retry"


class StreamError(Exception):
    """A reply that ended with `finish_reason=error` (a stream's error chunk)."""


@dataclass(frozen=True)
class Failure:
    """What the matrix reads from a provider error."""

    status: int | None
    message: str
    limit_source: str | None

    @classmethod
    def of(cls, exc: BaseException) -> Failure | None:
        """None for anything that is not a provider's answer (it propagates untouched)."""
        import openai

        if not isinstance(exc, openai.APIError | StreamError):
            return None
        err = body_error(exc)
        status = getattr(exc, "status_code", None)
        return cls(
            status=status if isinstance(status, int) else None,
            message=str(err.get("message") or exc),
            limit_source=(err.get("metadata") or {}).get("limit_source"),
        )


def body_error(exc: BaseException) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        return inner if isinstance(inner, dict) else {}
    return {}


@dataclass(frozen=True)
class Rule:
    when: Callable[[Failure], bool]
    action: Action
    reason: str


RULES: tuple[Rule, ...] = (
    Rule(lambda f: f.status == 429, Action.WAIT, "429"),
    Rule(
        lambda f: f.status == 402 and f.limit_source == "openrouter_in_flight_budget",
        Action.WAIT,
        "in-flight budget",
    ),
    Rule(lambda f: f.status == 402, Action.PAID_OFF, "402: credits ran out"),
    Rule(lambda f: f.status == 401, Action.ROTATE_KEY, "401: key refused"),
    Rule(lambda f: f.status == 400 and "context_length" in f.message, Action.NEXT_MODEL, "context too long"),
    Rule(lambda f: f.status in (400, 403), Action.FATAL, "request refused"),
    Rule(lambda f: f.status == 404, Action.NEXT_MODEL, "no endpoint"),
    Rule(lambda f: True, Action.RETRY, "transient"),  # 408, 5xx, timeouts, connection and stream errors
)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    failure: Failure | None = None


def classify(exc: BaseException, rules: tuple[Rule, ...] = RULES) -> Decision:
    """The matrix's answer for one attempt's exception. Pure: no clock, no state."""
    failure = Failure.of(exc)
    if failure is None:
        return Decision(Action.RAISE, type(exc).__name__)
    rule = next(r for r in rules if r.when(failure))
    return Decision(rule.action, rule.reason, failure)
