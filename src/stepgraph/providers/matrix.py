"""The router's error matrix as data: `classify(exception) -> Action`, first matching row wins.

| outcome                                   | action          | what the router does                               |
|-------------------------------------------|-----------------|----------------------------------------------------|
| not a provider error (e.g. BudgetExceeded)| `RAISE`         | propagates (typed stop)                            |
| 429                                       | `WAIT`          | wait (headers or body metadata, floored, capped per model) |
| 402 in-flight budget (Retry-After)        | `WAIT`          | transient: wait and retry, same cap                |
| 402 (credits, key limit, negative balance)| `PAID_OFF`      | paid models off for the run (free continue), next model |
| 403 key limit exceeded                    | `PAID_OFF`      | the key's spending cap: as 402                     |
| 401                                       | `ROTATE_KEY`    | retire the key, use the account's next key; none left: fatal |
| 400/413 context overflow (wording, `code`/`type`, LangChain's `ContextOverflowError`) | `NEXT_MODEL` | the next model (a larger context comes later) |
| 400 "... is not a valid model ID"         | `SKIP_MODEL`    | logged, typed skip to the next model; `ModelUnavailable` when none |
| 400 / 403                                 | `FATAL`         | `ProviderFatal` at once (no retry, no fallback)    |
| 404 no endpoint                           | `NEXT_MODEL`    | the next model                                     |
| 408, 5xx, timeout, connection, stream error | `RETRY`       | bounded retries with jitter, then the next model   |

A 200 whose body is a top-level `{"error": {...}}` (`ProviderBodyError`) and an error chunk inside a
stream are classified like the error's own `code` (a string code such as `server_error` is transient).

Before any call the router also throttles on its own: a limiter slot further than the step's budget, or
a step whose time is nearly spent, ends the step as `Throttled` (the state machine waits).

A new provider shape is one more `Rule` (put it above the row it refines) and, for a new kind of
handling, one more `Action` with its handler in the router's table.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class Action(enum.Enum):
    RAISE = "raise"
    WAIT = "wait"
    PAID_OFF = "paid_off"
    ROTATE_KEY = "rotate_key"
    NEXT_MODEL = "next_model"
    SKIP_MODEL = "skip_model"
    FATAL = "fatal"
    RETRY = "retry"


class StreamError(Exception):
    """A reply that ended with `finish_reason=error` (a stream's error chunk)."""


class ProviderBodyError(Exception):
    """An HTTP 200 whose body is a top-level `{"error": {...}}` (documented by OpenRouter): carries the
    error's own `code` as `status_code`, so it is classified like that status."""

    def __init__(self, body: dict[str, Any], http_status: int = 200) -> None:
        inner = body.get("error")
        err: dict[str, Any] = inner if isinstance(inner, dict) else {}
        code = err.get("code")
        self.status_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        self.http_status = http_status
        self.body = body
        super().__init__(f"HTTP {http_status} with an error body: {err.get('message') or err}")


@dataclass(frozen=True)
class Failure:
    """What the matrix reads from a provider error."""

    status: int | None
    message: str
    limit_source: str | None
    error_type: str = ""  # the body's `code` when it is a word, or its `type` / `metadata.error_type`
    overflow: bool = False  # LangChain raised its own ContextOverflowError

    @property
    def text(self) -> str:
        return f"{self.message} {self.error_type}"

    @classmethod
    def of(cls, exc: BaseException) -> Failure | None:
        """None for anything that is not a provider's answer (it propagates untouched)."""
        import openai
        from langchain_core.exceptions import ContextOverflowError

        if not isinstance(exc, openai.APIError | StreamError | ProviderBodyError):
            return None
        err = body_error(exc)
        found = err.get("metadata")
        metadata: dict[str, Any] = found if isinstance(found, dict) else {}
        status = getattr(exc, "status_code", None)
        code = err.get("code")
        if not isinstance(status, int) and isinstance(code, int) and not isinstance(code, bool):
            status = code  # an error chunk inside a stream: its own code
        words = [v for v in (code, err.get("type"), metadata.get("error_type")) if isinstance(v, str)]
        raw = metadata.get("raw")
        message = str(err.get("message") or exc) + (f" ({raw})" if isinstance(raw, str) else "")
        return cls(
            status=status if isinstance(status, int) else None,
            message=message,
            limit_source=metadata.get("limit_source"),
            error_type=" ".join(words),
            overflow=isinstance(exc, ContextOverflowError),
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


# Providers' wordings for "the prompt is longer than the context": OpenRouter's "maximum context length
# is N tokens", OpenAI/Groq's `context_length_exceeded`, Anthropic's "prompt is too long", others'
# "context window". Only read on 400/413, so a 402's "fewer max_tokens" never matches.
_OVERFLOW = re.compile(
    r"maximum context length|context[ _]length|context window|prompt is too long|too many input tokens", re.I
)


def is_context_overflow(f: Failure) -> bool:
    return f.overflow or (f.status in (400, 413) and bool(_OVERFLOW.search(f.text)))


def is_invalid_model(f: Failure) -> bool:
    return f.status == 400 and "not a valid model" in f.message.lower()


RULES: tuple[Rule, ...] = (
    Rule(lambda f: f.status == 429, Action.WAIT, "429"),
    Rule(
        lambda f: f.status == 402 and f.limit_source == "openrouter_in_flight_budget",
        Action.WAIT,
        "in-flight budget",
    ),
    Rule(lambda f: f.status == 402, Action.PAID_OFF, "402: credits ran out"),
    Rule(lambda f: f.status == 403 and "key limit" in f.message.lower(), Action.PAID_OFF, "403: key limit"),
    Rule(lambda f: f.status == 401, Action.ROTATE_KEY, "401: key refused"),
    Rule(is_context_overflow, Action.NEXT_MODEL, "context too long"),
    Rule(is_invalid_model, Action.SKIP_MODEL, "invalid model id"),
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
