"""CloudWatch metrics (EMF through Powertools): a usage-record listener and the router's events.

Each metric is emitted twice: with provider/model/graph dimensions and with the service alone, so
stack-wide alarms read one series. `enabled=False` records what would be sent without sending it; the
composition root sets it from POWERTOOLS_METRICS_DISABLED (local runs switch emission off).
"""

from __future__ import annotations

from collections.abc import Mapping

from stepgraph import metrics as names
from stepgraph.resources import METRIC_NAMESPACE, SERVICE_NAME
from stepgraph.usage.record import UsageRecord


def metrics_enabled(env: Mapping[str, str]) -> bool:
    return env.get("POWERTOOLS_METRICS_DISABLED", "").lower() not in ("1", "true", "yes")


class MetricsEmitter:
    def __init__(self, namespace: str = METRIC_NAMESPACE, graph: str = "", *, enabled: bool = True) -> None:
        self.namespace = namespace
        self.graph = graph
        self.enabled = enabled
        self.emitted: list[tuple[str, float, dict[str, str]]] = []  # what was sent, for tests

    def emit(self, metric: str, value: float, unit: str = "Count", **dims: str) -> None:
        full = {"service": SERVICE_NAME, **{k: v for k, v in dims.items() if v}}
        service = {"service": SERVICE_NAME}
        # A metric with no dimension beyond the service is one series, sent once.
        for dimensions in (full, service) if full != service else (service,):
            self.emitted.append((metric, value, dimensions))
            if not self.enabled:
                continue
            from aws_lambda_powertools.metrics import MetricUnit, single_metric

            with single_metric(
                name=metric, unit=getattr(MetricUnit, unit), value=value, namespace=self.namespace
            ) as m:
                for k, v in dimensions.items():
                    if k != "service":
                        m.add_dimension(name=k, value=v)

    # -- ledger listener -----------------------------------------------------------------------
    def __call__(self, record: UsageRecord) -> None:
        dims = {
            "provider": record.provider,
            "model": record.model_used or record.model_requested,
            "graph": record.graph,
        }
        self.emit(names.REQUESTS, 1, **dims)
        if record.status == "incomplete":
            self.emit(names.INCOMPLETE_REPLIES, 1, **dims)
        if record.status in ("ok", "incomplete"):  # an incomplete reply is still billed
            self.emit(names.PROMPT_TOKENS, record.prompt_tokens, **dims)
            self.emit(names.COMPLETION_TOKENS, record.completion_tokens, **dims)
            if record.cost_usd:
                self.emit(names.CREDITS_SPENT_USD, record.cost_usd, "NoUnit", **dims)
        elif record.status != "rate_limited":
            self.emit(names.PROVIDER_ERRORS, 1, **dims)
        if record.limiter_wait_ms:
            self.emit(names.LIMITER_WAIT_MS, record.limiter_wait_ms, "Milliseconds", **dims)

    # -- router events -------------------------------------------------------------------------
    def rate_limited(self, provider: str, model: str, *, local: bool) -> None:
        self.emit(names.RATE_LIMITED, 1, provider=provider, model=model, graph=self.graph)

    def fallback(self, provider: str, model: str) -> None:
        self.emit(names.FALLBACKS, 1, provider=provider, model=model, graph=self.graph)

    def learned_limit(self, provider: str, model: str, limit: str, capacity: int) -> None:
        self.emit(names.LEARNED_LIMIT, capacity, provider=provider, model=model, limit=limit)

    def breaker_open(self, provider: str, model: str) -> None:
        self.emit(names.BREAKER_OPEN, 1, provider=provider, model=model)
