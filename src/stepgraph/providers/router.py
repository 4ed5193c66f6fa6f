"""`ModelRouter`: a chat-model Runnable that walks the model chain under an explicit error matrix.

A chain entry is one model or a pool of equivalent deployments (`stepgraph.providers.pool`): each
attempt goes through the deployment that can send soonest, every HTTP attempt first takes a limiter
slot (tokens included) and, for paid models, a budget reservation (`stepgraph.providers.admission`),
then calls the provider once (client retries are 0, so each attempt is recorded). What an error means
is `stepgraph.providers.matrix.classify` (a table, tested row by row); what the router then does is
one small handler per `Action`; what it learns (limits, health) is `stepgraph.providers.feedback`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, merge_configs

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.providers import feedback
from stepgraph.providers.actions import HANDLERS
from stepgraph.providers.admission import admitted, leaving, prompt_tokens, token_costs
from stepgraph.providers.attempt import (
    DEFAULT_WAIT_S,
    MIN_WAIT_S,
    Drop,
    Incomplete,
    Next,
    Refused,
    WaitThen,
    call_kwargs,
    call_once,
    is_incomplete,
    retry_after_s,
)
from stepgraph.providers.capabilities import capable, describe, needed
from stepgraph.providers.drive import Call, Loop, Outcome, Pick, Sleep, run_async, run_sync
from stepgraph.providers.errors import (
    AllModelsFailed,
    ModelUnavailable,
    NoCapableModel,
    ProviderFatal,
    StreamInterrupted,
    Throttled,
)
from stepgraph.providers.matrix import Action, classify
from stepgraph.providers.pool import Blocked, Route, groups, pick
from stepgraph.usage.attempt import AttemptContext

__all__ = [
    "DEFAULT_WAIT_S",
    "MIN_WAIT_S",
    "ModelRouter",
    "Route",
    "RunState",
    "is_incomplete",
    "prompt_tokens",
    "retry_after_s",
]

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
class _Attempt:
    route: Route
    number: int = 0
    key_label: str = ""
    failures: int = 0
    waits: int = 0  # provider-asked waits (429, in-flight 402) on this deployment
    max_tokens: int | None = None  # set when a `length`/empty reply is retried with a larger budget


class ModelRouter(Runnable[Any, BaseMessage]):
    """A chat model that tries each entry of the chain in order (a pool: its soonest deployment),
    every HTTP attempt admitted by the deployment's limiter (and, for paid models, the budget guard)
    and recorded by the callbacks.

    Args:
        routes: one `Route` per deployment (`build_chat_model` builds them from the provider table);
            the routes of one pool are consecutive and share `Route.pool`.
        budget_guard: a `BudgetGuard` for paid models, or None.
        callbacks: LangChain callbacks added to every attempt (the `UsageCallbackHandler`).
        clock: injected time (sleeps for limiter slots, 429 waits and backoff).
        remaining_s: seconds the caller may still spend; a wait beyond it raises `Throttled`.
        run_state: what the router learns during the run (paid models off after a 402, fallbacks).
        allow_paid: False skips models that are not free.
        retries: transient failures retried per deployment before it is left out.
        base_delay_s: the first retry's backoff (full jitter, doubling).
        metrics: the `MetricsEmitter` for RateLimited, Fallbacks, LearnedLimit and BreakerOpen, or None.
        min_attempt_s: no attempt starts with less time than this left.
        max_rate_waits: provider-asked waits (429, in-flight 402) per deployment before moving on.
        fallback_after_s: an entry whose next slot (limiter or provider reset) is further away than
            this is passed over for the next entry of the chain (e.g. the paid variant once the free
            day is spent); when none serves, the step ends `Throttled` for the shortest wait.
        role: the model role this router serves (usage records carry it).

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
        role: str = "default",
    ) -> None:
        self.routes = routes
        self.role = role
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

    # -- the chat-model surface: every call keyword reaches the provider (tools, response_format, ...) --
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        # Inside a LangGraph node this picks up the node's config (metadata such as langgraph_node and
        # the runtime's execution/item ids, and the user's callbacks), so they reach every attempt.
        return _drain(run_sync(self._chain(input, ensure_config(config), kwargs), self.clock.sleep))

    def stream(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """The reply's chunks as the provider sends them (tool-call deltas included); a failure before
        the first chunk is retried or falls back like `invoke`, one after it raises `StreamInterrupted`."""
        yield from run_sync(self._chain(input, ensure_config(config), kwargs, stream=True), self.clock.sleep)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        outcome = Outcome()
        async for _ in run_async(self._chain(input, ensure_config(config), kwargs), self._asleep, outcome):
            pass
        message: BaseMessage = outcome.value
        return message

    async def astream(  # type: ignore[override]
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        loop = self._chain(input, ensure_config(config), kwargs, stream=True)
        async for chunk in run_async(loop, self._asleep, Outcome()):
            yield chunk

    async def _asleep(self, seconds: float) -> None:
        asleep = getattr(self.clock, "asleep", None)
        await (asleep(seconds) if asleep is not None else asyncio.sleep(max(0.0, seconds)))

    def _chain(
        self, input: Any, config: RunnableConfig, kwargs: dict[str, Any], *, stream: bool = False
    ) -> Loop:
        needs = needed(kwargs)
        if needs and not any(capable(r.spec, needs) for r in self.routes):
            raise NoCapableModel(describe(needs), [r.deployment for r in self.routes])
        last: BaseException | None = None
        refused: Refused | None = None
        for position, whole in enumerate(groups(self.routes)):
            group = [r for r in whole if capable(r.spec, needs)]
            if not group:
                continue  # this entry cannot serve the call (e.g. no tool calling): the next one may
            try:
                return (yield from self._serve(group, input, config, kwargs, stream, fallback=position > 0))
            except Next as exc:
                if isinstance(exc, Refused) and (refused is None or exc.wait_s < refused.wait_s):
                    refused = exc
                last = exc.__cause__ or exc
                self.run_state.fallbacks += 1
                if self.metrics:
                    self.metrics.fallback(group[0].provider, group[0].model)
        if refused is not None:
            raise Throttled(refused.wait_s, refused.reason)
        if isinstance(last, ModelUnavailable):
            raise last
        raise AllModelsFailed(
            f"every model of the chain failed or was skipped; last error: {last}",
            hint="check the providers' status and keys, or add a model to the chain",
        )

    # -- one chain entry: attempts through its deployments until a reply, the next entry or a stop --
    def _eligible(self, route: Route, tokens: int, run_id: str) -> bool:
        if not route.spec.free and (self.run_state.paid_disabled or not self.allow_paid):
            return False
        if tokens > route.spec.context_tokens:
            return False  # a model with a larger context comes later in the chain
        retired = route.breaker is not None and bool(run_id) and route.breaker.status(run_id) == "retired"
        return not retired

    def _serve(
        self,
        group: list[Route],
        input: Any,
        config: RunnableConfig,
        kwargs: dict[str, Any],
        stream: bool,
        *,
        fallback: bool,
    ) -> Loop:
        tokens = prompt_tokens(input)
        run_id = AttemptContext.from_metadata(config.get("metadata")).execution_id
        attempts = {id(r): _Attempt(r) for r in group}
        eligible = [r for r in group if self._eligible(r, tokens, run_id)]
        not_before: dict[int, float] = {}
        refused: Refused | None = None
        last: BaseException | None = None
        while True:
            eligible = [r for r in eligible if self._eligible(r, tokens, run_id)]
            if not eligible:
                if refused is not None:
                    raise refused
                raise Next() from last
            if self.remaining_s() < self.min_attempt_s:
                # A call that cannot finish before the Lambda's deadline would be killed mid-flight.
                raise Throttled(0.0, "the step's time budget is spent")
            self._warm(eligible)
            chosen = yield Pick(partial(self._pick, eligible, tokens, attempts, kwargs, not_before, run_id))
            if isinstance(chosen, Blocked):
                yield Sleep(self._blocked(chosen))
                continue
            attempt = attempts[id(chosen.route)]
            try:
                return (
                    yield from self._attempt(
                        attempt, chosen.grant, input, config, kwargs, stream, fallback=fallback, run_id=run_id
                    )
                )
            except WaitThen as exc:
                not_before[id(chosen.route)] = self.clock.now() + exc.wait_s
            except Drop as exc:
                eligible.remove(chosen.route)
                last = exc.__cause__ or exc
                if isinstance(exc, Refused) and (refused is None or exc.wait_s < refused.wait_s):
                    refused = exc

    def _pick(
        self,
        eligible: list[Route],
        tokens: int,
        attempts: dict[int, _Attempt],
        kwargs: dict[str, Any],
        not_before: dict[int, float],
        run_id: str,
    ) -> Any:
        return pick(
            eligible,
            now=self.clock.now(),
            costs=lambda r: token_costs(r.limiter, tokens + self._max_tokens(attempts[id(r)], kwargs)),
            horizon=lambda r: min(r.limiter.max_wait_s, self.remaining_s()),
            not_before=not_before,
            run_id=run_id,
            on_refusal=self._refusal_seen,
        )

    @staticmethod
    def _warm(routes: list[Route]) -> None:
        """Build each deployment's client (cached per key) before a slot is reserved: a container's
        first client costs about a second of lazy imports, and a send that leaves that late after its
        slot bunches into the provider's window."""
        for route in routes:
            key = route.keys.current()
            if key is not None:
                route.make_llm(key[1])

    def _blocked(self, blocked: Blocked) -> float:
        """None of the entry's deployments can send now: a short local wait to sleep, else hand it on."""
        wait = blocked.wait_s
        if blocked.kind == "breaker":
            raise Refused(wait, blocked.reason)  # the next entry of the chain serves meanwhile
        if wait <= self.remaining_s() and blocked.kind == "local":
            return wait
        if wait > self.fallback_after_s:
            raise Refused(wait, blocked.reason)  # e.g. the free day is spent: the next entry serves
        raise Throttled(wait, blocked.reason)

    def _refusal_seen(self, route: Route, grant: Any) -> None:
        if self.metrics:
            self.metrics.rate_limited(route.provider, route.model, local=True)

    @staticmethod
    def _in_force(route: Route, name: str) -> int:
        limits = {lim.name for lim in getattr(route.limiter, "limits", ())}
        return int(route.limiter.capacity(name)) if name in limits else 0

    @staticmethod
    def _max_tokens(attempt: _Attempt, kwargs: dict[str, Any] | None = None) -> int:
        asked = (kwargs or {}).get("max_tokens") or (kwargs or {}).get("max_completion_tokens")
        return attempt.max_tokens or (asked if isinstance(asked, int) else attempt.route.spec.max_tokens)

    def _slot_wait(self, grant: Any) -> float:
        # Sleep to the reserved slot, not wait_s after the write returned: sends that drift late by
        # the write's latency bunch up in the provider's window.
        until_slot = grant.send_at - self.clock.now() if grant.send_at else grant.wait_s
        wait = max(0.0, min(grant.wait_s, until_slot))
        if wait > self.remaining_s():
            raise Throttled(wait, "limiter slot")
        return wait

    def _time_left_check(self) -> None:
        if self.remaining_s() < self.min_attempt_s:
            # The limiter's writes can be slow (a loaded DynamoDB): a call started now could not finish
            # before the Lambda's deadline (its timeout would be spent), so end the step throttled.
            raise Throttled(0.0, "the step's time budget is spent")

    def _attempt(
        self,
        attempt: _Attempt,
        grant: Any,
        input: Any,
        config: RunnableConfig,
        kwargs: dict[str, Any],
        stream: bool,
        *,
        fallback: bool,
        run_id: str,
    ) -> Loop:
        route = attempt.route
        attempt.number += 1
        attempt.key_label, secret = self._key(route)
        llm = route.make_llm(secret)  # built by `_warm` before the slot was reserved: a cache hit
        estimate_usd = (
            prompt_tokens(input) * route.spec.usd_per_prompt_token
            + COMPLETION_ESTIMATE_TOKENS * route.spec.usd_per_completion_token
        )
        with admitted(
            route,
            grant,
            budget_guard=self.budget_guard,
            estimate_usd=estimate_usd,
            slot_wait=self._slot_wait,
        ) as admission:
            if admission.waited_s:
                yield Sleep(admission.waited_s)
            self._time_left_check()
            leaving(route, admission, self.clock.now())
            context = AttemptContext().for_attempt(
                attempt=attempt.number,
                provider=route.provider,
                key_label=attempt.key_label,
                model_requested=route.model,
                limiter_wait_ms=int(admission.waited_s * 1000),
                fallback=fallback,
                account=route.account,
                learned_limit=",".join(f"{k}={v}" for k, v in sorted(admission.learned.items())),
                limit_rpm=self._in_force(route, "rpm"),
                limit_tpm=self._in_force(route, "tpm"),
                role=self.role,
            )
            call_config = merge_configs(
                config,
                # "nostream": LangGraph's message stream shows the routed model's reply, not each attempt.
                {"metadata": context.attempt_metadata(), "callbacks": self.callbacks, "tags": ["nostream"]},
            )
            call = Call(llm, input, call_config, call_kwargs(kwargs, attempt, self.remaining_s()), stream)
            try:
                message = yield from call_once(route, call, admission, attempt)
            except Incomplete:
                attempt.max_tokens = route.spec.length_retry_max_tokens
                log.warning(
                    "incomplete reply from %s %s: retrying with max_tokens=%s",
                    route.provider,
                    route.model,
                    attempt.max_tokens,
                )
                raise WaitThen(0.0) from None
            except Exception as exc:
                if call.delivered:  # the caller holds part of this reply: a retry would repeat it
                    raise StreamInterrupted(route.provider, route.model, exc) from exc
                decision = classify(exc)
                if decision.action is Action.RAISE:
                    raise
                self._handlers[decision.action](self, attempt, decision, exc, run_id)
                raise WaitThen(0.0) from exc  # the handler let it be retried (e.g. another key)
            feedback.after_reply(route, message, now=self.clock.now(), metrics=self.metrics)
            return message

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

    _handlers = HANDLERS


def _drain(steps: Iterator[Any]) -> Any:
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
