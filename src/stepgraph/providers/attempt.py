"""The router's internal outcomes of one attempt, and the waits it reads from a provider's answer."""

from __future__ import annotations

from typing import Any

from stepgraph.providers.waits import wait_hint_s

# A provider that names no wait gets this; a reset already in the past gets the floor, so a skewed
# clock cannot spin a 0-s loop.
DEFAULT_WAIT_S = 1.0
MIN_WAIT_S = 1.0


class Next(Exception):
    """Internal: give up on this chain entry, try the next one."""


class Drop(Next):
    """Internal: leave this deployment out of its pool for this call (the others may still serve)."""


class Refused(Drop):
    """Internal: this deployment cannot be served for a long while (its limiter or the provider said
    so); if nothing else serves, the step ends `Throttled` for the shortest wait."""

    def __init__(self, wait_s: float, reason: str) -> None:
        super().__init__(reason)
        self.wait_s, self.reason = wait_s, reason


class WaitThen(Exception):
    """Internal: this deployment may be tried again after `wait_s` (a 429's wait, a retry's backoff,
    another key); meanwhile another deployment of the pool may serve."""

    def __init__(self, wait_s: float, reason: str = "") -> None:
        super().__init__(reason)
        self.wait_s, self.reason = wait_s, reason


class Incomplete(Exception):
    """Internal: a `length` or empty reply on a model configured to retry with more `max_tokens`."""


def retry_after_s(exc: BaseException, now: float, *, floor_s: float = MIN_WAIT_S) -> float:
    """Seconds to wait: the provider's hint (headers or body metadata, `stepgraph.providers.waits`),
    never less than `floor_s`; `DEFAULT_WAIT_S` when it names none."""
    hint = wait_hint_s(exc, now)
    return max(floor_s, DEFAULT_WAIT_S if hint is None else hint)


def is_incomplete(message: Any, finish_reason: str | None) -> bool:
    """A reply cut at `max_tokens` or with nothing in it (no text, no tool call)."""
    if finish_reason == "length":
        return True
    content = getattr(message, "content", "")
    return not content and not getattr(message, "tool_calls", None)


def call_kwargs(kwargs: dict[str, Any], attempt: Any, budget_s: float) -> dict[str, Any]:
    """The caller's keywords (tools, tool_choice, response_format, stop, temperature, ...) plus the
    attempt's own: its timeout (the step's remaining time) and a length retry's larger `max_tokens`."""
    out: dict[str, Any] = dict(kwargs)
    asked = out.get("timeout")
    if budget_s != float("inf"):
        # A caller's own timeout may shorten an attempt, never stretch it past the step's time.
        out["timeout"] = min(budget_s, asked) if isinstance(asked, int | float) else budget_s
    if attempt.max_tokens:
        out["max_tokens"] = attempt.max_tokens
    return out


def call_once(route: Any, call: Any, admission: Any, attempt: Any) -> Any:
    """One HTTP attempt (a `stepgraph.providers.drive.Call` the driver runs): the reply's cost and tokens
    into `admission`; an error chunk raises `StreamError`, a cut reply on a model that retries `Incomplete`."""
    from stepgraph.providers.admission import actual_tokens
    from stepgraph.providers.matrix import StreamError
    from stepgraph.usage.reply import reply_usage

    message = yield call
    used = reply_usage(message)
    admission.cost_usd = used.cost_usd or 0.0
    if used.prompt_tokens or used.completion_tokens:
        max_tokens = attempt.max_tokens or route.spec.max_tokens
        admission.tokens_used = actual_tokens(
            route.accounting, used.prompt_tokens, used.completion_tokens, max_tokens
        )
    if used.finish_reason == "error":
        raise StreamError("the stream ended with finish_reason=error")
    retry_with = route.spec.length_retry_max_tokens
    if (
        retry_with
        and attempt.max_tokens is None
        and not call.delivered
        and is_incomplete(message, used.finish_reason)
    ):
        raise Incomplete()
    return message
