"""`stepgraph demo --pool`: the example batch over a pool of simulated free providers, with a live view
per provider (requests, 429s, errors, the busiest window against each limit, tokens, the day's count)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from stepgraph.local.pool import DEMO_POOL, POOL, SimProvider, simulator_spec, stack_env


def pool_simulator_options(opts: Any, providers: tuple[SimProvider, ...] | None = None) -> dict[str, Any]:
    providers = providers or DEMO_POOL
    fail_rate = 0.05 if opts.faults == "mixed" else 0.0
    return {
        "providers": simulator_spec(providers, fail_rate=fail_rate),
        "time_scale": opts.time_scale,
        "seed": opts.seed,
    }


def pool_env(sim: Any, providers: tuple[SimProvider, ...] | None = None) -> dict[str, str]:
    return stack_env(sim, providers or DEMO_POOL)


def pool_config(models: list[str] | None = None) -> dict[str, Any]:
    return {"models": models or [f"pool:{POOL}"]}


def _limit(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def provider_rows(stats: dict[str, Any]) -> Table:
    """One row per provider, from the simulator's `/_sim/stats` of a pool."""
    table = Table(title="providers (what each simulated provider saw)")
    for col in (
        "provider",
        "dialect",
        "requests",
        "ok",
        "429s",
        "errors",
        "busiest window",
        "tokens/window",
        "today",
    ):
        table.add_column(col, justify="left" if col in ("provider", "dialect") else "right")
    for name, s in stats.get("providers", {}).items():
        account = s["accounts"].get("default", {})
        errors = sum(v for k, v in s["errors_by_status"].items() if k != "429")
        table.add_row(
            name,
            s.get("header_dialect", ""),
            str(s["requests"]),
            str(s["ok"]),
            str(s["rate_limited"]),
            str(errors),
            f"{account.get('max_in_window', 0)} / {_limit(account.get('rpm'))}",
            f"{account.get('max_tokens_in_window', 0):,} / {_limit(account.get('tpm'))}",
            f"{account.get('day_count', 0)} / {_limit(account.get('rpd'))}",
        )
    return table


def totals(stats: dict[str, Any]) -> dict[str, int]:
    """Requests, 429s and window violations summed over the pool."""
    providers = stats.get("providers", {}).values()
    accounts = [a for s in providers for a in s["accounts"].values()]
    return {
        "requests": sum(s["requests"] for s in stats.get("providers", {}).values()),
        "rate_limited": sum(s["rate_limited"] for s in stats.get("providers", {}).values()),
        "window_violations": sum(a["window_violations"] + a["token_window_violations"] for a in accounts),
        "max_in_window": max((a["max_in_window"] for a in accounts), default=0),
    }


def summary_line(stats: dict[str, Any]) -> str:
    t = totals(stats)
    return (
        f"simulated pool: {t['requests']} requests over {len(stats.get('providers', {}))} providers, "
        f"{t['rate_limited']} answered 429, window violations: {t['window_violations']}"
    )
