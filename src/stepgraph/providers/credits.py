"""Poll `GET /api/v1/key` once per provider ACCOUNT into CreditsRemainingUSD, UsageDailyUSD and
FreeRequestsRemaining. Errors are logged and counted (ProviderErrors), never raised: a schedule must
not crash-loop."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from stepgraph import metrics as names
from stepgraph.observability import MetricsEmitter
from stepgraph.providers.keys import load_keys
from stepgraph.providers.table import ProviderTable

log = logging.getLogger(__name__)


def poll_account(base_url: str, key: str, *, http: httpx.Client) -> dict[str, Any]:
    resp = http.get(base_url.rstrip("/") + "/key", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    resp.raise_for_status()
    return dict(resp.json().get("data") or {})


def poll_all(
    table: ProviderTable,
    *,
    env: Mapping[str, str],
    http: httpx.Client | None = None,
    emitter: MetricsEmitter | None = None,
    secrets_client: Any = None,
    day_count: Any = None,
) -> dict[str, Any]:
    """`day_count(provider, account) -> int | None` gives the limiter's count when the API has none;
    keys come from `env` (local runs) or each provider's secret."""
    emitter = emitter or MetricsEmitter()
    http = http or httpx.Client()
    report: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    for name, spec in table.providers.items():
        if "openrouter" not in spec.base_url and not spec.attribution:
            continue  # only OpenRouter-style APIs have /key
        if (spec.base_url, spec.account) in seen:
            continue
        seen.add((spec.base_url, spec.account))
        label = f"{name}:{spec.account}"
        try:
            keys = load_keys(name, spec, secrets_client=secrets_client, env=env)
            current = keys.current()
            if current is None:
                raise RuntimeError("no key configured")
            data = poll_account(spec.base_url, current[1], http=http)
        except Exception as exc:
            log.warning("credits poll failed for %s: %s", label, type(exc).__name__)
            emitter.emit(names.PROVIDER_ERRORS, 1, provider=name)
            report[label] = {"error": type(exc).__name__}
            continue
        remaining = data.get("limit_remaining")
        if remaining is not None:
            emitter.emit(names.CREDITS_REMAINING_USD, float(remaining), "NoUnit", provider=name)
        if data.get("usage_daily") is not None:
            emitter.emit(names.USAGE_DAILY_USD, float(data["usage_daily"]), "NoUnit", provider=name)
        free = (data.get("free_model_daily_requests") or {}).get("remaining")
        if free is None and day_count is not None:
            used = day_count(name, spec.account)
            free = None if used is None else max(0, 50 - used)
        if free is not None:
            emitter.emit(names.FREE_REQUESTS_REMAINING, float(free), provider=name)
        report[label] = {
            "credits_remaining": remaining,
            "usage_daily": data.get("usage_daily"),
            "free_remaining": free,
        }
    return report
