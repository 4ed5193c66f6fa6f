"""The composition root of a function: settings read once, and what they build.

A handler module holds one `Container` (its module globals are the Lambda container's):
`Container.get(<the handler's environment>)` builds the `Dependencies` on the first call and hands the same object to
every later call of a warm container, so limiter caches stay warm and a retired key stays retired.
Library functions never read the environment; they take what they need from this object.

    env = {"STEPGRAPH_BUCKET": "b", "OPENROUTER_API_KEY": "sk-..."}
    deps = build_dependencies(settings_from(env), env)
    run_graph_step(event, deps=deps, remaining_ms=lambda: 60_000, request_id="r-1")

Light on purpose: the validate-input function imports this without LangChain; the limiter, the
ledger and the budget guard load on first use.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stepgraph.clock import SYSTEM_CLOCK
from stepgraph.config import Settings, settings_from
from stepgraph.graphs.registry import graph_roles, registered
from stepgraph.observability import MetricsEmitter, metrics_enabled
from stepgraph.providers.table import ProviderSpec, ProviderTable, load_provider_table
from stepgraph.resources import BUDGET_KEY

if TYPE_CHECKING:
    from stepgraph.limiter import BudgetGuard, DynamoDBRateLimiter
    from stepgraph.limiter.breaker import CircuitBreaker
    from stepgraph.limiter.run_guard import RunGuard
    from stepgraph.providers.keys import KeyRing
    from stepgraph.usage.ledger import Listener, UsageLedger

ClientFactory = Callable[[str, "str | None"], Any]
# How long a step may sleep for a limiter slot before it hands the wait to the state machine: long
# enough that a fan-out of a few branches fits into one step at 20 rpm (one slot every 3 s).
MAX_WAIT_S = 10.0
MIN_STATE_MACHINE_WAIT_S = 1.0
# A new container's first window slots start this far ahead (a DynamoDB write's round trip and then
# some), until its limiter has measured its own acquisitions (see DynamoDBRateLimiter's lead_s).
SEND_LEAD_S = 0.1
# Learned limits last this long after the last evidence; breakers open after 3 failures in a minute for a
# minute; workers re-read both every few seconds (all scaled by STEPGRAPH_TIME_SCALE).
LEARNED_QUIET_S = 600.0
SHARED_REFRESH_S = 2.0
BREAKER_WINDOW_S = 60.0
BREAKER_COOLDOWN_S = 60.0
BREAKER_PROBE_S = 30.0
# The pacing leaves an allowance for sends that reach the provider late (the limits' margin and the clock
# skew): a send later than this share of it after its slot moves the schedule back (the limiter's late_s),
# the rest is for the way to the provider.
LATE_SEND_SHARE = 0.25
# A token window's refunds (a call's reserved max_tokens handed back) make a busy view stale this fast.
TOKEN_VIEW_S = 0.5


def late_send_s(settings: Settings) -> float:
    """How late after its slot a send may leave before its limiter's schedule moves back: a share of
    the allowance the pacing keeps on a minute's window (its margin plus the clock skew)."""
    allowance = 60.0 * settings.limit_margin + settings.clock_skew_s
    return LATE_SEND_SHARE * allowance * settings.time_scale


def new_client(service: str, endpoint_url: str | None = None) -> Any:
    import boto3

    # A session per client: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]


class Dependencies:
    """Clients, the provider table, the graph registry, key rings, limiters and factories for the
    per-invocation parts (ledger, budget guard, metrics), all from one `Settings` and one environment.

    Args:
        settings: the validated settings.
        env: the function's environment (provider keys and base URLs, `STEPGRAPH_GRAPHS`, Powertools).
        client: `(service, endpoint_url) -> boto3 client`, injected for tests.
    """

    def __init__(self, settings: Settings, env: Mapping[str, str], *, client: ClientFactory = new_client):
        self.settings = settings
        self.env = dict(env)
        self._client = client
        self.keyrings: dict[str, KeyRing] = {}
        self._limiters: dict[tuple[str, str, str, float], DynamoDBRateLimiter] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    # -- clients (created on first use) ---------------------------------------------------------
    @cached_property
    def s3(self) -> Any:
        return self._client("s3", self.settings.endpoint_url)

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb", self.settings.dynamodb_endpoint_url or self.settings.endpoint_url)

    @cached_property
    def secrets(self) -> Any:
        return self._client("secretsmanager", self.settings.endpoint_url)

    # -- configuration read once ----------------------------------------------------------------
    @cached_property
    def table(self) -> ProviderTable:
        return load_provider_table(self.settings.providers, env=self.env)

    @cached_property
    def graphs(self) -> dict[str, str]:
        return registered(self.env)

    @cached_property
    def graph_roles(self) -> dict[str, tuple[str, ...]]:
        return graph_roles(self.env)

    def metrics(self, graph: str = "") -> MetricsEmitter:
        return MetricsEmitter(graph=graph, enabled=metrics_enabled(self.env))

    # -- per invocation -------------------------------------------------------------------------
    def limiter_factory(
        self, profile_override: str | None, primary: str
    ) -> Callable[[str, ProviderSpec, str], DynamoDBRateLimiter | None]:
        """`(provider, spec, model) -> limiter` of that deployment for one run (free models of an account
        share one, a paid model has its own: `ProviderSpec.deployment`); kept across the container's calls.
        The run's profile override and STEPGRAPH_LIMITS_OVERRIDES apply to the primary provider's
        free models (the platform caps they describe)."""
        from stepgraph.limiter import DynamoDBRateLimiter, load_profile

        settings = self.settings

        def make(provider: str, spec: ProviderSpec, model: str) -> DynamoDBRateLimiter | None:
            limiter_key, profile = spec.deployment(provider, model)
            shared_free = limiter_key == f"{provider}:{spec.account}"
            primary_free = provider == primary and shared_free
            if profile_override and primary_free:
                profile = profile_override
            overrides = (
                json.loads(settings.limits_overrides) if settings.limits_overrides and primary_free else None
            )
            if overrides:
                known = {lim.name for lim in load_profile(profile)}
                overrides = {k: v for k, v in overrides.items() if k in known}
            if spec.limit_overrides:  # the provider table corrects its profile's published numbers
                overrides = {**spec.limit_overrides, **(overrides or {})}
            limits = load_profile(
                profile,
                time_scale=settings.time_scale * (1 + settings.limit_margin),
                day_scale=settings.time_scale,  # days start when the provider's do: no margin
                overrides=overrides,
            )
            if not limits:
                return None
            key = (settings.limiter_table, limiter_key, profile, settings.time_scale)
            with self._lock:
                if key not in self._limiters:
                    self._limiters[key] = DynamoDBRateLimiter(
                        settings.limiter_table,
                        key[1],
                        limits,
                        client=self.dynamodb,
                        # Never hand the state machine a wait shorter than its Wait can take (whole seconds).
                        max_wait_s=max(MAX_WAIT_S * settings.time_scale, MIN_STATE_MACHINE_WAIT_S),
                        max_skew_s=settings.clock_skew_s * settings.time_scale,
                        lead_s=SEND_LEAD_S,
                        learned_quiet_s=LEARNED_QUIET_S * settings.time_scale,
                        learned_refresh_s=SHARED_REFRESH_S * settings.time_scale,
                        token_view_s=TOKEN_VIEW_S * settings.time_scale,
                        late_s=late_send_s(settings),
                    )
                return self._limiters[key]

        return make

    def breaker_factory(self) -> Callable[[str], CircuitBreaker]:
        """`(deployment health key) -> CircuitBreaker`, one per deployment, kept across the container's calls."""
        from stepgraph.limiter.breaker import CircuitBreaker
        from stepgraph.limiter.store import DynamoDBStore

        settings = self.settings
        scale = settings.time_scale

        def make(health_key: str) -> CircuitBreaker:
            with self._lock:
                if health_key not in self._breakers:
                    store = DynamoDBStore(settings.limiter_table, self.dynamodb)
                    self._breakers[health_key] = CircuitBreaker(
                        lambda: store,
                        health_key,
                        SYSTEM_CLOCK,
                        window_s=BREAKER_WINDOW_S * scale,
                        cooldown_s=BREAKER_COOLDOWN_S * scale,
                        probe_s=BREAKER_PROBE_S * scale,
                        refresh_s=SHARED_REFRESH_S * scale,
                    )
                return self._breakers[health_key]

        return make

    def budget_guard(self) -> BudgetGuard | None:
        """The spend caps, or None when no cap is set."""
        settings = self.settings
        if settings.daily_budget_usd is None and settings.total_budget_usd is None:
            return None
        from stepgraph.limiter import BudgetGuard

        return BudgetGuard(
            settings.limiter_table,
            BUDGET_KEY,
            daily_cap_usd=settings.daily_budget_usd,
            total_cap_usd=settings.total_budget_usd,
            client=self.dynamodb,
        )

    def run_guard(
        self, execution_id: str, item_id: str, *, budget_usd: float | None, max_calls_per_item: int | None
    ) -> BudgetGuard | RunGuard | None:
        """The guard one item's calls go through: the stack's caps alone, or with the run's own limits."""
        stack = self.budget_guard()
        if budget_usd is None and max_calls_per_item is None:
            return stack
        from stepgraph.limiter.run_guard import RunGuard

        return RunGuard(
            self.settings.limiter_table,
            execution_id,
            item_id,
            stack=stack,
            budget_usd=budget_usd,
            max_calls_per_item=max_calls_per_item,
            client=self.dynamodb,
        )

    def ledger(
        self, execution_id: str, invocation_id: str, listeners: Iterable[Listener] = ()
    ) -> UsageLedger:
        from stepgraph.usage.ledger import UsageLedger

        return UsageLedger(
            self.settings.bucket,
            execution_id=execution_id,
            invocation_id=invocation_id,
            client=self.s3,
            gzip=self.settings.usage_gzip,
            listeners=listeners,
            flush_every=self.settings.usage_flush_every,
        )


def build_dependencies(
    settings: Settings, env: Mapping[str, str], *, client: ClientFactory = new_client
) -> Dependencies:
    """The one factory: a function's dependencies from its settings and environment."""
    return Dependencies(settings, env, client=client)


def _relevant(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    # Lambda sets `_X_AMZN_TRACE_ID` (and other `_`-names) per invocation: they configure nothing.
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith("_")))


class Container:
    """What a warm Lambda container keeps: the dependencies of its environment, built once.

    A changed environment (a redeployed configuration, or a test that sets a variable) builds new
    dependencies, as AWS starts new containers when a function's configuration changes.
    """

    def __init__(self, *, client: ClientFactory = new_client) -> None:
        self._client = client
        self._key: tuple[tuple[str, str], ...] | None = None
        self._deps: Dependencies | None = None
        self._lock = threading.Lock()

    def get(self, env: Mapping[str, str]) -> Dependencies:
        key = _relevant(env)
        with self._lock:
            if self._deps is None or key != self._key:
                # A bad setting raises here, every call, until it is fixed (nothing half-built is kept).
                self._deps = build_dependencies(settings_from(dict(key)), dict(key), client=self._client)
                self._key = key
            return self._deps
