"""What the router does for each `Action` of the error matrix: one small function per action.

Each takes the router, the deployment's attempt, the matrix's decision, the exception and the run id,
and either returns (the attempt may be retried at once, e.g. with another key) or raises: `WaitThen`
(retry this deployment after a wait, another may serve meanwhile), `Drop` / `Refused` (leave it out of
its pool for this call), `Throttled` or `ProviderFatal`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

from stepgraph.providers import feedback
from stepgraph.providers.attempt import Drop, Refused, WaitThen, retry_after_s
from stepgraph.providers.errors import ModelUnavailable, ProviderFatal, Throttled
from stepgraph.providers.matrix import Action, Decision

log = logging.getLogger("stepgraph.providers.router")


def on_wait(self: Any, attempt: Any, decision: Decision, exc: BaseException, run_id: str) -> None:
    route = attempt.route
    if decision.failure is not None and decision.failure.status == 429:
        if self.metrics:
            self.metrics.rate_limited(route.provider, route.model, local=False)
        reason = f"{route.provider} 429"
        feedback.after_rate_limit(route, exc, now=self.clock.now(), metrics=self.metrics)
    else:
        reason = f"{route.provider} {decision.reason}"
    wait = retry_after_s(exc, self.clock.now())
    attempt.waits += 1
    if attempt.waits > self.max_rate_waits:
        # Asked to wait again and again: stop spending the step on this deployment.
        log.warning(
            "%s %s: %d waits on %s; moving on", route.provider, route.model, attempt.waits - 1, reason
        )
        raise Refused(wait, reason) from exc
    if wait > self.remaining_s():
        if wait > self.fallback_after_s:
            raise Refused(wait, reason) from exc  # a long wait: let the next deployment serve
        raise WaitThen(wait, reason) from exc
    raise WaitThen(wait, reason) from exc


def on_paid_off(self: Any, attempt: Any, decision: Decision, exc: BaseException, run_id: str) -> None:
    self.run_state.paid_disabled = True
    self.run_state.events.append(f"402 from {attempt.route.provider}: paid models off for this run")
    raise Drop() from exc


def on_rotate_key(self: Any, attempt: Any, decision: Decision, exc: BaseException, run_id: str) -> None:
    attempt.route.keys.retire(attempt.key_label)  # the next key of the same account takes over


def on_next_model(self: Any, attempt: Any, decision: Decision, exc: BaseException, run_id: str) -> None:
    if decision.failure is not None and decision.failure.status == 404:
        feedback.retire(attempt.route, run_id, decision.failure.message)
    raise Drop() from exc


def on_skip_model(self: Any, attempt: Any, decision: Decision, exc: BaseException, run_id: str) -> None:
    route = attempt.route
    detail = (decision.failure.message if decision.failure else str(exc))[:300]
    log.warning("%s does not serve %s (%s); skipping to the next model", route.provider, route.model, detail)
    self.run_state.events.append(f"{route.provider}:{route.model} skipped: {detail}")
    status = decision.failure.status if decision.failure else None
    raise Drop() from ModelUnavailable(route.provider, route.model, status, detail)


def on_fatal(self: Any, attempt: Any, decision: Decision, exc: BaseException, run_id: str) -> None:
    failure = decision.failure
    status = failure.status if failure else None
    detail = (failure.message if failure else str(exc))[:300]
    raise ProviderFatal(attempt.route.provider, attempt.route.model, status, detail) from None


def on_retry(self: Any, attempt: Any, decision: Decision, exc: BaseException, run_id: str) -> None:
    attempt.failures += 1
    opened = feedback.after_failure(attempt.route, metrics=self.metrics)
    if opened:
        # The deployment is out for its cooldown: another member or entry serves; with none the step
        # waits the cooldown (the item is not failed for a provider that is down for a while).
        cooldown = float(getattr(attempt.route.breaker, "cooldown_s", 0.0))
        raise Refused(cooldown, f"{attempt.route.deployment} circuit open") from exc
    if attempt.failures > self.retries:
        raise Drop() from exc
    delay = random.uniform(0, self.base_delay_s * 2 ** (attempt.failures - 1))
    if delay > self.remaining_s():
        raise Throttled(delay, f"{attempt.route.provider} retry backoff") from exc
    raise WaitThen(delay) from exc


HANDLERS: dict[Action, Callable[[Any, Any, Decision, BaseException, str], None]] = {
    Action.WAIT: on_wait,
    Action.PAID_OFF: on_paid_off,
    Action.ROTATE_KEY: on_rotate_key,
    Action.NEXT_MODEL: on_next_model,
    Action.SKIP_MODEL: on_skip_model,
    Action.FATAL: on_fatal,
    Action.RETRY: on_retry,
}
