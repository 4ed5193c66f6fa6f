"""`ModelRouter`: a chat-model Runnable that walks the model chain under an explicit error matrix.

Every HTTP attempt first takes a limiter slot (and, for paid models, a budget reservation), then
calls the provider once (client retries are 0, so each attempt is recorded). The matrix:

| outcome                               | action                                                         |
|---------------------------------------|----------------------------------------------------------------|
| limiter slot further than the budget  | `Throttled` (the state machine waits)                          |
| 429                                   | wait Retry-After / X-RateLimit-Reset if it fits, else Throttled|
| 408, 5xx, timeout, stream error       | bounded retries with jitter, then the next model               |
| step's time nearly spent              | `Throttled` before the call (each call's timeout <= the budget)|
| 400 context_length_exceeded           | the next model with a larger context                           |
| 402 in-flight budget (Retry-After)    | transient: wait and retry                                      |
| 402                                   | paid models off for the run (free continue), next model        |
| 401                                   | retire the key, use the account's next key; none left: fatal   |
| 400 / 403                             | `ProviderFatal` at once (no retry, no fallback)                |
| 404 no endpoint                       | the next model                                                 |
| `BudgetExceeded`                      | propagates (typed stop)                                        |
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.limiter import LimiterUnavailable
from stepgraph.providers.errors import AllModelsFailed, ProviderFatal, Throttled
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.table import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """Per-invocation facts the router learns (e.g. credits ran out)."""

    paid_disabled: bool = False
    fallbacks: int = 0
    events: list[str] = field(default_factory=list)


@dataclass
class Route:
    provider: str
    model: str
    spec: ModelSpec
    keys: KeyRing
    make_llm: Callable[[str], Runnable]  # key -> chat model
    limiter: Any = None  # DynamoDBRateLimiter | None


class _Next(Exception):
    """Internal: give up on this model, try the next one."""


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def _header(exc: BaseException, name: str) -> str | None:
    response = getattr(exc, "response", None)
    return response.headers.get(name) if response is not None else None


def _body_error(exc: BaseException) -> dict[str, Any]:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return body.get("error", body) if isinstance(body.get("error", body), dict) else {}
    return {}


def retry_after_s(exc: BaseException, now: float) -> float:
    """Seconds to wait from X-RateLimit-Reset (ms epoch), else Retry-After, else 1."""
    reset = _header(exc, "X-RateLimit-Reset")
    if reset and reset.isdigit():
        return max(0.0, int(reset) / 1000 - now)
    after = _header(exc, "Retry-After")
    try:
        return max(0.0, float(after)) if after else 1.0
    except ValueError:
        return 1.0


def prompt_tokens(messages: Any) -> int:
    text = (
        messages if isinstance(messages, str) else " ".join(str(getattr(m, "content", m)) for m in messages)
    )
    return max(1, len(text) // 4)


class ModelRouter(Runnable[Any, BaseMessage]):
    def __init__(
        self,
        routes: list[Route],
        *,
        budget_guard: Any = None,
        callbacks: list[Any] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        remaining_s: Callable[[], float] = lambda: float("inf"),
        run_state: RunState | None = None,
        allow_paid: bool = True,
        retries: int = 2,
        base_delay_s: float = 0.5,
        metrics: Any = None,
        min_attempt_s: float = 1.0,
    ) -> None:
        self.routes = routes
        self.min_attempt_s = min_attempt_s
        self.budget_guard = budget_guard
        self.callbacks = list(callbacks or [])
        self.clock = clock
        self.remaining_s = remaining_s
        self.run_state = run_state or RunState()
        self.allow_paid = allow_paid
        self.retries = retries
        self.base_delay_s = base_delay_s
        self.metrics = metrics

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        # Inside a LangGraph node this picks up the node's config (metadata such as langgraph_node and
        # the runtime's execution/item ids, and the user's callbacks), so they reach every attempt.
        config = ensure_config(config)
        tokens = prompt_tokens(input)
        last: BaseException | None = None
        for position, route in enumerate(self.routes):
            if not route.spec.free and (self.run_state.paid_disabled or not self.allow_paid):
                continue
            if tokens > route.spec.context_tokens:
                continue  # a model with a larger context comes later in the chain
            try:
                return self._attempts(route, input, config, fallback=position > 0)
            except _Next as exc:
                last = exc.__cause__ or exc
                self.run_state.fallbacks += 1
                if self.metrics:
                    self.metrics.fallback(route.provider, route.model)
        raise AllModelsFailed(
            f"every model of the chain failed or was skipped; last error: {last}",
            hint="check the providers' status and keys, or add a model to the chain",
        )

    def _wait_or_throttle(self, wait: float, reason: str) -> float:
        if wait <= 0:
            return 0.0
        if wait > self.remaining_s():
            raise Throttled(wait, reason)
        self.clock.sleep(wait)
        return wait

    def _attempts(
        self, route: Route, input: Any, config: RunnableConfig | None, *, fallback: bool
    ) -> BaseMessage:
        import openai

        failures = 0
        attempt = 0
        while True:
            attempt += 1
            key = route.keys.current()
            if key is None:
                raise ProviderFatal(
                    route.provider,
                    route.model,
                    401,
                    "no usable API key left",
                    hint=f"add a key for {route.provider} (env or Secrets Manager)",
                )
            label, secret = key
            if self.remaining_s() < self.min_attempt_s:
                # A call that cannot finish before the Lambda's deadline would be killed mid-flight.
                raise Throttled(0.0, "the step's time budget is spent")
            waited = 0.0
            grant = None
            if route.limiter is not None:
                grant = route.limiter.try_acquire(
                    1, horizon=min(route.limiter.max_wait_s, self.remaining_s())
                )
                if not grant.granted:
                    if self.metrics:
                        self.metrics.rate_limited(route.provider, route.model, local=True)
                    raise Throttled(grant.wait_s, f"{route.provider} limit {grant.refused_by}")
                # Sleep to the reserved slot, not wait_s after the write returned: sends that drift late by
                # the write's latency bunch up in the provider's window.
                until_slot = grant.send_at - self.clock.now() if grant.send_at else grant.wait_s
                waited = self._wait_or_throttle(min(grant.wait_s, until_slot), "limiter slot")
            reservation = None
            if self.budget_guard is not None and not route.spec.free:
                estimate = (
                    prompt_tokens(input) * route.spec.usd_per_prompt_token
                    + 4096 * route.spec.usd_per_completion_token
                )
                reservation = self.budget_guard.reserve(estimate)
            meta = {
                "attempt": attempt,
                "provider": route.provider,
                "key_label": label,
                "model_requested": route.model,
                "limiter_wait_ms": int(waited * 1000),
                "fallback": fallback,
            }
            call_config = merge_configs(config, {"metadata": meta, "callbacks": self.callbacks})
            cost = 0.0
            try:
                budget = self.remaining_s()
                limit = {"timeout": budget} if budget != float("inf") else {}
                message = route.make_llm(secret).invoke(input, call_config, **limit)
                usage = (
                    (message.response_metadata or {}).get("token_usage")
                    or (message.response_metadata or {}).get("provider_usage")
                    or {}
                )
                cost = float(usage.get("cost") or 0.0)
                if (message.response_metadata or {}).get("finish_reason") == "error":
                    raise _StreamError("the stream ended with finish_reason=error")
                return message
            except (_StreamError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                failures += 1
                self._retry_or_next(route, failures, exc)
            except openai.APIStatusError as exc:
                status = _status(exc)
                err = _body_error(exc)
                message_text = str(err.get("message") or exc)
                if status == 429:
                    if self.metrics:
                        self.metrics.rate_limited(route.provider, route.model, local=False)
                    self._wait_or_throttle(retry_after_s(exc, self.clock.now()), f"{route.provider} 429")
                elif (
                    status == 402
                    and (err.get("metadata") or {}).get("limit_source") == "openrouter_in_flight_budget"
                ):
                    self._wait_or_throttle(retry_after_s(exc, self.clock.now()), "in-flight budget")
                elif status == 402:
                    self.run_state.paid_disabled = True
                    self.run_state.events.append(f"402 from {route.provider}: paid models off for this run")
                    raise _Next() from exc
                elif status == 401:
                    route.keys.retire(label)  # the next key of the same account takes over
                elif status == 400 and "context_length" in message_text:
                    raise _Next() from exc
                elif status in (400, 403):
                    raise ProviderFatal(route.provider, route.model, status, message_text[:300]) from None
                elif status == 404:
                    raise _Next() from exc
                else:  # 408, 5xx
                    failures += 1
                    self._retry_or_next(route, failures, exc)
            except openai.APIError as exc:  # an error event inside an SSE stream (no HTTP status)
                failures += 1
                self._retry_or_next(route, failures, exc)
            finally:
                if grant is not None:
                    self._release(route, grant)
                if reservation is not None:
                    self.budget_guard.reconcile(reservation, cost)

    @staticmethod
    def _release(route: Route, grant: Any) -> None:
        # A lease that cannot be handed back expires on its own; failing here would hide a reply
        # that was already paid for and make the step call the provider again.
        try:
            route.limiter.release(grant)
        except LimiterUnavailable as exc:
            log.warning("limiter release failed; the lease expires by itself: %s", exc)

    def _retry_or_next(self, route: Route, failures: int, exc: BaseException) -> None:
        if failures > self.retries:
            raise _Next() from exc
        delay = random.uniform(0, self.base_delay_s * 2 ** (failures - 1))
        if delay > self.remaining_s():
            raise Throttled(delay, f"{route.provider} retry backoff") from exc
        self.clock.sleep(delay)


class _StreamError(Exception):
    pass
