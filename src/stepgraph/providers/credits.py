"""Poll each provider ACCOUNT once per run into CreditsRemainingUSD, CreditsKnown, UsageDailyUSD and
FreeRequestsRemaining.

The account balance is `GET /credits` (`total_credits - total_usage`), which needs a management key;
without one, a key with its own spending cap gives `limit_remaining` from `GET /key`; with neither
the balance is unknown: nothing is emitted for it (never a made-up number), CreditsKnown is 0 and
one warning per run says how to fix it. CreditsKnown is emitted for every account whose poll
worked, so its absence means the poller is down (an alarm watches that).

Polite to the provider: one `/key` and at most one `/credits` request per account per run, no
retries (the next scheduled run is the retry). Errors are logged and counted (ProviderErrors),
never raised: a schedule must not crash-loop. Keys are never logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from stepgraph import metrics as names
from stepgraph.config import Settings
from stepgraph.errors import ConfigError
from stepgraph.limiter.limits import Limit
from stepgraph.limiter.profiles import load_profile
from stepgraph.observability import MetricsEmitter
from stepgraph.providers.keys import load_keys, load_management_key
from stepgraph.providers.table import ProviderSpec, ProviderTable, load_provider_table

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
# `day_count(limiter_key, limit)`: requests the limiter counted today under that utc_day limit.
DayCount = Callable[[str, Limit], int | None]
# `learned_day_limit(limiter_key)`: a lower day limit learned from the provider's answers. The
# provider-pool work (issue 15) keeps those per account in the limiter table; pass its reader here.
LearnedDayLimit = Callable[[str], int | None]


def _get(http: httpx.Client, url: str, key: str) -> dict[str, Any]:
    resp = http.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT_S)
    resp.raise_for_status()
    return dict(resp.json().get("data") or {})


def read_key(base_url: str, key: str, *, http: httpx.Client) -> dict[str, Any]:
    """`GET /key`: the key's own cap (`limit_remaining`, null when uncapped), usage, free-tier use."""
    return _get(http, base_url.rstrip("/") + "/key", key)


def read_balance(base_url: str, management_key: str, *, http: httpx.Client) -> float | None:
    """`GET /credits` with a management key: the account balance, `total_credits - total_usage`
    (negative when the account is overdrawn)."""
    data = _get(http, base_url.rstrip("/") + "/credits", management_key)
    total, used = data.get("total_credits"), data.get("total_usage")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (total, used)):
        return None
    return float(total) - float(used)  # type: ignore[arg-type]


def day_limit(spec: ProviderSpec, overrides: dict[str, Any] | None = None) -> Limit | None:
    """The account's request limit per UTC day from its limits profile (after overrides)."""
    known = {lim.name for lim in load_profile(spec.limits_profile)}
    limits = load_profile(
        spec.limits_profile, overrides={k: v for k, v in (overrides or {}).items() if k in known}
    )
    return next((lim for lim in limits if lim.kind == "utc_day" and lim.unit == "requests"), None)


def limiter_day_count(table_name: str, client: Any) -> DayCount:
    """Read the limiter's own day counter (the same item graph-step's limiter charges)."""
    from stepgraph.limiter.limiter import DynamoDBRateLimiter  # loads LangChain: only when polled

    def count(limiter_key: str, limit: Limit) -> int | None:
        return DynamoDBRateLimiter(table_name, limiter_key, [limit], client=client).used_today(limit.name)

    return count


def publish_spent_today(guard: Any, emitter: MetricsEmitter) -> float | None:
    """SpentTodayUSD from the budget guard's own UTC-day counter (what the daily cap is checked
    against, reservations included): a live "today" for the dashboard, where CloudWatch's wall-clock
    day shows a day's sum only once that day has ended."""
    try:
        spent = float(guard.spent_today_usd())
    except Exception as exc:
        log.warning("budget counter unreadable: %s", type(exc).__name__)
        return None
    emitter.emit(names.SPENT_TODAY_USD, spent, "NoUnit")
    return spent


def _free_left(
    label: str,
    data: dict[str, Any],
    limit: Limit | None,
    day_count: DayCount | None,
    learned_day_limit: LearnedDayLimit | None,
) -> tuple[int | None, str | None]:
    remaining = (data.get("free_model_daily_requests") or {}).get("remaining")
    if remaining is not None:
        return int(remaining), "api"
    if limit is None or day_count is None:
        return None, None
    try:
        used = day_count(label, limit)
        learned = learned_day_limit(label) if learned_day_limit else None
    except Exception as exc:
        log.warning("limiter day count unreadable for %s: %s", label, type(exc).__name__)
        return None, None
    if used is None:
        return None, None
    cap = limit.capacity if learned is None else min(limit.capacity, learned)
    return max(0, cap - used), "limiter"


def _primary_overrides(settings: Settings, table: ProviderTable) -> tuple[str, dict[str, Any] | None]:
    # As in graph-step's wiring: STEPGRAPH_LIMITS_OVERRIDES applies to the chain's first provider.
    primary = table.members(table.chain[0])[0][0]
    return primary, json.loads(settings.limits_overrides) if settings.limits_overrides else None


def _where_to_set(spec: ProviderSpec) -> str:
    places = [f"env {spec.management_key_env}"] if spec.management_key_env else []
    if spec.management_secret_id:
        places.append(f'secret {spec.management_secret_id} as {{"key": "..."}}')
    return " or ".join(places) or "a management key"


def poll_all(
    settings: Settings,
    *,
    http: httpx.Client | None = None,
    emitter: MetricsEmitter | None = None,
    secrets_client: Any = None,
    day_count: DayCount | None = None,
    learned_day_limit: LearnedDayLimit | None = None,
    env: Mapping[str, str],
    table: ProviderTable | None = None,
) -> dict[str, Any]:
    """Poll every OpenRouter-style account once; returns a report per `provider:account` (no keys).

    Keys and management keys come from `env` (local runs) or the providers' secrets; `table` is the
    provider table when the caller has it (else read from `settings.providers`)."""
    table = table or load_provider_table(settings.providers, env=env)
    emitter = emitter or MetricsEmitter()
    own_http = http is None
    http = http or httpx.Client(timeout=TIMEOUT_S, headers={"User-Agent": "stepgraph-credits-poller"})
    primary, overrides = _primary_overrides(settings, table)
    report: dict[str, Any] = {}
    unknown: list[str] = []
    seen: set[tuple[str, str]] = set()
    try:
        for name, spec in table.providers.items():
            if "openrouter" not in spec.base_url and not spec.attribution:
                continue  # only OpenRouter-style APIs have /key and /credits
            if (spec.base_url, spec.account) in seen:
                continue  # limits and balance belong to the account: once per account
            seen.add((spec.base_url, spec.account))
            label = f"{name}:{spec.account}"  # also the limiter's key of this account
            data, key_error = None, None
            try:
                current = load_keys(name, spec, secrets_client=secrets_client, env=env).current()
                if current is None:
                    raise ConfigError("no key configured")
                data = read_key(spec.base_url, current[1], http=http)
            except Exception as exc:
                key_error = type(exc).__name__
            balance, balance_error = None, None
            try:
                management = load_management_key(name, spec, secrets_client=secrets_client, env=env)
                if management:
                    balance = read_balance(spec.base_url, management, http=http)
            except Exception as exc:
                balance_error = type(exc).__name__
            if data is None and balance is None:
                log.warning("credits poll failed for %s: %s", label, key_error or balance_error)
                emitter.emit(names.PROVIDER_ERRORS, 1, provider=name)
                report[label] = {"error": key_error or balance_error}
                continue
            for what, error in (("key", key_error), ("balance", balance_error)):
                if error:
                    log.warning("credits poll of %s for %s failed: %s", what, label, error)
                    emitter.emit(names.PROVIDER_ERRORS, 1, provider=name)
            data = data or {}
            source = "credits" if balance is not None else None
            if balance is None and isinstance(data.get("limit_remaining"), int | float):
                balance, source = float(data["limit_remaining"]), "key_limit"
            if balance is not None:
                emitter.emit(names.CREDITS_REMAINING_USD, balance, "NoUnit", provider=name)
            else:
                unknown.append(f"{label} ({_where_to_set(spec)})")
            emitter.emit(names.CREDITS_KNOWN, 0 if balance is None else 1, "NoUnit", provider=name)
            if data.get("usage_daily") is not None:
                emitter.emit(names.USAGE_DAILY_USD, float(data["usage_daily"]), "NoUnit", provider=name)
            try:
                limit = day_limit(spec, overrides if name == primary else None)
            except ConfigError as exc:
                log.warning("no day limit for %s: %s", label, exc.message)
                limit = None
            free, free_source = _free_left(label, data, limit, day_count, learned_day_limit)
            if free is not None:
                emitter.emit(names.FREE_REQUESTS_REMAINING, float(free), provider=name)
            report[label] = {
                "credits_remaining": balance,
                "credits_source": source,
                "usage_daily": data.get("usage_daily"),
                "free_remaining": free,
                "free_source": free_source,
            }
    finally:
        if own_http:
            http.close()
    if unknown:  # once per run, not per account
        log.warning(
            "account balance unknown for %s: the key has no spending cap and no management key is set, "
            "so CreditsRemainingUSD is not emitted and the CreditsLow alarm cannot fire",
            "; ".join(unknown),
        )
    return report
