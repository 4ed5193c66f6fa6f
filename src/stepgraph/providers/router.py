"""`ModelRouter`: a chat-model Runnable that walks the model chain under an explicit error matrix.

Every HTTP attempt first takes a limiter slot (and, for paid models, a budget reservation), then
calls the provider once (client retries are 0, so each attempt is recorded). What an error means is
`stepgraph.providers.matrix.classify` (a table, tested row by row); what the router then does is one
small handler per `Action`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.limiter import LimiterUnavailable
from stepgraph.providers.errors import AllModelsFailed, ModelUnavailable, ProviderFatal, Throttled
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.matrix import Action, Decision, StreamError, classify
from stepgraph.providers.table import ModelSpec
from stepgraph.providers.waits import wait_hint_s
from stepgraph.usage.attempt import AttemptContext
from stepgraph.usage.reply import reply_usage

log = logging.getLogger(__name__)
# A paid call's budget reservation assumes this many completion tokens until the reply says.
COMPLETION_ESTIMATE_TOKENS = 4096


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


class _Refused(_Next):
    """Internal: this model cannot be served for a long while (its limiter or the provider said so);
    try the next one, and if none serves, end the step as `Throttled` for the shortest wait."""

    def __init__(self, wait_s: float, reason: str) -> None:
        super().__init__(reason)
        self.wait_s, self.reason = wait_s, reason


class _Incomplete(Exception):
    """Internal: a `length` or empty reply on a model configured to retry with more `max_tokens`."""


@dataclass
class _Admission:
    """One attempt's admission: how long it waited for its slot, and (after the call) what it cost."""

    waited_s: float = 0.0
    cost_usd: float = 0.0


@dataclass
class _Attempt:
    route: Route
    number: int
    key_label: str
    failures: int = 0
    waits: int = 0  # provider-asked waits (429, in-flight 402) on this model
    max_tokens: int | None = None  # set when a `length`/empty reply is retried with a larger budget


# A provider that names no wait gets this; a reset already in the past gets the floor, so a skewed
# clock cannot spin a 0-s loop.
DEFAULT_WAIT_S = 1.0
MIN_WAIT_S = 1.0


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


def prompt_tokens(messages: Any) -> int:
    text = (
        messages if isinstance(messages, str) else " ".join(str(getattr(m, "content", m)) for m in messages)
    )
    return max(1, len(text) // 4)


class ModelRouter(Runnable[Any, BaseMessage]):
    """A chat model that tries each route of the chain in order, every HTTP attempt admitted by the
    route's limiter (and, for paid models, the budget guard) and recorded by the callbacks.

    Args:
        routes: the chain, one `Route` per model (`build_chat_model` builds them from the provider table).
        budget_guard: a `BudgetGuard` for paid models, or None.
        callbacks: LangChain callbacks added to every attempt (the `UsageCallbackHandler`).
        clock: injected time (sleeps for limiter slots, 429 waits and backoff).
        remaining_s: seconds the caller may still spend; a wait beyond it raises `Throttled`.
        run_state: what the router learns during the run (paid models off after a 402, fallbacks).
        allow_paid: False skips models that are not free.
        retries: transient failures retried per model before the next model.
        base_delay_s: the first retry's backoff (full jitter, doubling).
        metrics: the `MetricsEmitter` for RateLimited and Fallbacks, or None.
        min_attempt_s: no attempt starts with less time than this left.
        max_rate_waits: provider-asked waits (429, in-flight 402) per model before moving on.
        fallback_after_s: a model whose next slot (limiter or provider reset) is further away than
            this is passed over for the next model of the chain (e.g. the paid variant once the free
            day is spent); when no model serves, the step ends `Throttled` for the shortest wait.

    Returns (from `invoke`): the provider's AIMessage; raises `Throttled` (the state machine waits),
    `ProviderFatal`, `AllModelsFailed` or `BudgetExceeded`.

    Example:
        >>> model = build_chat_model(table, limiter_factory=..., callbacks=[UsageCallbackHandler(ledger)])
        >>> model.invoke([HumanMessage("Summarise this ticket")]).content
    """

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
        max_rate_waits: int = 3,
        fallback_after_s: float = 300.0,
    ) -> None:
        self.routes = routes
        self.max_rate_waits = max_rate_waits
        self.fallback_after_s = fallback_after_s
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
        refused: _Refused | None = None
        for position, route in enumerate(self.routes):
            if not route.spec.free and (self.run_state.paid_disabled or not self.allow_paid):
                continue
            if tokens > route.spec.context_tokens:
                continue  # a model with a larger context comes later in the chain
            try:
                return self._attempts(route, input, config, fallback=position > 0)
            except _Next as exc:
                if isinstance(exc, _Refused) and (refused is None or exc.wait_s < refused.wait_s):
                    refused = exc
                last = exc.__cause__ or exc
                self.run_state.fallbacks += 1
                if self.metrics:
                    self.metrics.fallback(route.provider, route.model)
        if refused is not None:
            raise Throttled(refused.wait_s, refused.reason)
        if isinstance(last, ModelUnavailable):
            raise last
        raise AllModelsFailed(
            f"every model of the chain failed or was skipped; last error: {last}",
            hint="check the providers' status and keys, or add a model to the chain",
        )

    def _wait_or_throttle(self, wait: float, reason: str) -> float:
        if wait <= 0:
            return 0.0
        if wait > self.remaining_s():
            if wait > self.fallback_after_s:
                raise _Refused(wait, reason)  # a long wait: let the next model serve meanwhile
            raise Throttled(wait, reason)
        self.clock.sleep(wait)
        return wait

    # -- one model: attempts until a reply, the next model or a stop ------------------------------
    def _attempts(
        self, route: Route, input: Any, config: RunnableConfig | None, *, fallback: bool
    ) -> BaseMessage:
        attempt = _Attempt(route, 0, "")
        while True:
            attempt.number += 1
            attempt.key_label, secret = self._key(route)
            if self.remaining_s() < self.min_attempt_s:
                # A call that cannot finish before the Lambda's deadline would be killed mid-flight.
                raise Throttled(0.0, "the step's time budget is spent")
            # Built before the slot is reserved: a container's first client costs about a second of
            # lazy imports, and a send that leaves that late after its slot bunches into the window.
            llm = route.make_llm(secret)
            with self._admitted(route, input) as admission:
                context = AttemptContext().for_attempt(
                    attempt=attempt.number,
                    provider=route.provider,
                    key_label=attempt.key_label,
                    model_requested=route.model,
                    limiter_wait_ms=int(admission.waited_s * 1000),
                    fallback=fallback,
                )
                call_config = merge_configs(
                    config, {"metadata": context.attempt_metadata(), "callbacks": self.callbacks}
                )
                try:
                    return self._call(route, llm, input, call_config, admission, attempt)
                except _Incomplete:
                    attempt.max_tokens = route.spec.length_retry_max_tokens
                    log.warning(
                        "incomplete reply from %s %s: retrying with max_tokens=%s",
                        route.provider,
                        route.model,
                        attempt.max_tokens,
                    )
                    continue
                except Exception as exc:
                    decision = classify(exc)
                    if decision.action is Action.RAISE:
                        raise
                    self._handlers[decision.action](self, attempt, decision, exc)

    @staticmethod
    def _key(route: Route) -> tuple[str, str]:
        key = route.keys.current()
        if key is None:
            raise ProviderFatal(
                route.provider,
                route.model,
                401,
                "no usable API key left",
                hint=f"add a key for {route.provider} (env or Secrets Manager)",
            )
        return key

    @contextmanager
    def _admitted(self, route: Route, input: Any) -> Iterator[_Admission]:
        """A limiter slot (slept to) and, for a paid model, a budget reservation; both handed back when
        the attempt ends however it ends (the reservation reconciled with the reply's cost)."""
        admission = _Admission()
        grant = None
        reservation = None
        try:
            if route.limiter is not None:
                grant = self._slot(route)
                # Sleep to the reserved slot, not wait_s after the write returned: sends that drift late by
                # the write's latency bunch up in the provider's window.
                until_slot = grant.send_at - self.clock.now() if grant.send_at else grant.wait_s
                admission.waited_s = self._wait_or_throttle(min(grant.wait_s, until_slot), "limiter slot")
                if self.remaining_s() < self.min_attempt_s:
                    # The limiter's writes can be slow (a loaded DynamoDB): a call started now could not
                    # finish before the Lambda's deadline (its timeout would be spent), so end the step.
                    raise Throttled(0.0, "the step's time budget is spent")
            if self.budget_guard is not None and not route.spec.free:
                estimate = (
                    prompt_tokens(input) * route.spec.usd_per_prompt_token
                    + COMPLETION_ESTIMATE_TOKENS * route.spec.usd_per_completion_token
                )
                reservation = self.budget_guard.reserve(estimate)
            yield admission
        finally:
            if grant is not None:
                self._release(route, grant)
            if reservation is not None:
                self.budget_guard.reconcile(reservation, admission.cost_usd)

    def _slot(self, route: Route) -> Any:
        grant = route.limiter.try_acquire(1, horizon=min(route.limiter.max_wait_s, self.remaining_s()))
        if not grant.granted:
            if self.metrics:
                self.metrics.rate_limited(route.provider, route.model, local=True)
            reason = f"{route.provider} limit {grant.refused_by}"
            if grant.wait_s > self.fallback_after_s:
                raise _Refused(grant.wait_s, reason)  # e.g. the free day is spent: the next model serves
            raise Throttled(grant.wait_s, reason)
        return grant

    def _call(
        self,
        route: Route,
        llm: Runnable,
        input: Any,
        config: RunnableConfig,
        admission: _Admission,
        attempt: _Attempt,
    ) -> BaseMessage:
        budget = self.remaining_s()
        kwargs: dict[str, Any] = {"timeout": budget} if budget != float("inf") else {}
        if attempt.max_tokens:
            kwargs["max_tokens"] = attempt.max_tokens
        message = llm.invoke(input, config, **kwargs)
        used = reply_usage(message)
        admission.cost_usd = used.cost_usd or 0.0
        if used.finish_reason == "error":
            raise StreamError("the stream ended with finish_reason=error")
        retry_with = route.spec.length_retry_max_tokens
        if retry_with and attempt.max_tokens is None and is_incomplete(message, used.finish_reason):
            raise _Incomplete()
        return message

    @staticmethod
    def _release(route: Route, grant: Any) -> None:
        # A lease that cannot be handed back expires on its own; failing here would hide a reply
        # that was already paid for and make the step call the provider again.
        try:
            route.limiter.release(grant)
        except LimiterUnavailable as exc:
            log.warning("limiter release failed; the lease expires by itself: %s", exc)

    # -- what each Action does ----------------------------------------------------------------
    def _on_wait(self, attempt: _Attempt, decision: Decision, exc: BaseException) -> None:
        route = attempt.route
        if decision.failure is not None and decision.failure.status == 429:
            if self.metrics:
                self.metrics.rate_limited(route.provider, route.model, local=False)
            reason = f"{route.provider} 429"
        else:
            reason = f"{route.provider} {decision.reason}"
        wait = retry_after_s(exc, self.clock.now())
        attempt.waits += 1
        if attempt.waits > self.max_rate_waits:
            # Asked to wait again and again: stop spending the step on this model.
            log.warning(
                "%s %s: %d waits on %s; moving on", route.provider, route.model, attempt.waits - 1, reason
            )
            raise _Refused(wait, reason) from exc
        self._wait_or_throttle(wait, reason)

    def _on_paid_off(self, attempt: _Attempt, decision: Decision, exc: BaseException) -> None:
        self.run_state.paid_disabled = True
        self.run_state.events.append(f"402 from {attempt.route.provider}: paid models off for this run")
        raise _Next() from exc

    def _on_rotate_key(self, attempt: _Attempt, decision: Decision, exc: BaseException) -> None:
        attempt.route.keys.retire(attempt.key_label)  # the next key of the same account takes over

    def _on_next_model(self, attempt: _Attempt, decision: Decision, exc: BaseException) -> None:
        raise _Next() from exc

    def _on_skip_model(self, attempt: _Attempt, decision: Decision, exc: BaseException) -> None:
        route = attempt.route
        detail = (decision.failure.message if decision.failure else str(exc))[:300]
        log.warning(
            "%s does not serve %s (%s); skipping to the next model", route.provider, route.model, detail
        )
        self.run_state.events.append(f"{route.provider}:{route.model} skipped: {detail}")
        status = decision.failure.status if decision.failure else None
        raise _Next() from ModelUnavailable(route.provider, route.model, status, detail)

    def _on_fatal(self, attempt: _Attempt, decision: Decision, exc: BaseException) -> None:
        failure = decision.failure
        status = failure.status if failure else None
        detail = (failure.message if failure else str(exc))[:300]
        raise ProviderFatal(attempt.route.provider, attempt.route.model, status, detail) from None

    def _on_retry(self, attempt: _Attempt, decision: Decision, exc: BaseException) -> None:
        attempt.failures += 1
        if attempt.failures > self.retries:
            raise _Next() from exc
        delay = random.uniform(0, self.base_delay_s * 2 ** (attempt.failures - 1))
        if delay > self.remaining_s():
            raise Throttled(delay, f"{attempt.route.provider} retry backoff") from exc
        self.clock.sleep(delay)

    _handlers: dict[Action, Callable[[ModelRouter, _Attempt, Decision, BaseException], None]] = {
        Action.WAIT: _on_wait,
        Action.PAID_OFF: _on_paid_off,
        Action.ROTATE_KEY: _on_rotate_key,
        Action.NEXT_MODEL: _on_next_model,
        Action.SKIP_MODEL: _on_skip_model,
        Action.FATAL: _on_fatal,
        Action.RETRY: _on_retry,
    }
