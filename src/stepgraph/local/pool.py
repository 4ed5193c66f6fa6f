"""A pool of simulated free providers for local runs: what the simulator serves and the provider table
that points the stack at it (`stepgraph demo --pool`, `stepgraph bench pool`, the fault matrix).

Each `SimProvider` is one provider of the built-in table (same name, model, header dialect and key
variable) with the limits the simulator enforces; the stack's limiter profile for it gets the very same
numbers (`limit_overrides`), as a user would configure the published ones. The pool is named `sim`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stepgraph.local.simulator import DEV_KEY
from stepgraph.providers.table import DEFAULT_TABLE

POOL = "sim"
# The replies are short: a realistic max_tokens keeps token reservations (Cerebras counts it up front,
# the limiter reserves it everywhere) near what a call uses.
MAX_TOKENS = 512


@dataclass(frozen=True)
class SimProvider:
    name: str  # a provider of the built-in table
    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    tpd: int | None = None
    max_concurrency: int | None = None
    # Simulator-only options (faults, a reported lower limit, ...): not known to the stack's profile.
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def model(self) -> str:
        """The provider's free gpt-oss-120b variant in the built-in table."""
        models = DEFAULT_TABLE["providers"][self.name]["models"]
        return next(m for m, spec in models.items() if spec.get("free"))

    @property
    def deployment(self) -> str:
        return f"{self.name}:{self.model}"

    def limits(self) -> dict[str, int]:
        values = {"rpm": self.rpm, "rpd": self.rpd, "tpm": self.tpm, "tpd": self.tpd}
        return {k: v for k, v in values.items() if v is not None}

    def simulator_options(self, fail_rate: float = 0.0) -> dict[str, Any]:
        """This provider's entry of the simulator's `providers` (its profile gives dialect and models)."""
        opts: dict[str, Any] = {
            "rpm": self.rpm,
            "rpd": self.rpd,
            "tpm": self.tpm,
            "tpd": self.tpd,
            "max_concurrency": self.max_concurrency,
            "fail_rate": fail_rate,
            "models": [self.model],
        }
        return {**opts, **self.extra}

    def limit_overrides(self) -> dict[str, dict[str, Any]]:
        """The stack's limits for this account: the numbers the simulator enforces."""
        shapes = {
            "rpm": {"per_seconds": 60, "kind": "sliding"},
            "rpd": {"per_seconds": 86_400, "kind": "utc_day"},
            "tpm": {"per_seconds": 60, "kind": "sliding", "unit": "tokens"},
            "tpd": {"per_seconds": 86_400, "kind": "utc_day", "unit": "tokens"},
        }
        out = {k: {"capacity": v, **shapes[k]} for k, v in self.limits().items()}
        if self.max_concurrency is not None:
            out["concurrency"] = {"capacity": self.max_concurrency, "per_seconds": 600, "kind": "concurrency"}
        return out


# `stepgraph demo --pool`: four free providers with different limits (per simulated minute / day).
DEMO_POOL = (
    SimProvider("openrouter", rpm=20, rpd=200),
    SimProvider("groq", rpm=30, rpd=1000, tpm=8000, tpd=200_000),
    SimProvider("cerebras", rpm=30, rpd=14_400, tpm=60_000, tpd=1_000_000),
    SimProvider("nvidia", rpm=40),
)


def simulator_spec(providers: tuple[SimProvider, ...], *, fail_rate: float = 0.0) -> dict[str, Any]:
    return {p.name: p.simulator_options(fail_rate) for p in providers}


def provider_table(sim: Any, providers: tuple[SimProvider, ...]) -> dict[str, Any]:
    """The built-in table with every pool member pointed at its simulated provider and held to its limits;
    the chain is the pool alone."""
    table = json.loads(json.dumps(DEFAULT_TABLE))
    for p in providers:
        spec = table["providers"][p.name]
        handle = sim.provider(p.name)
        spec["base_url"] = (
            handle.base_url if spec.get("header_dialect") == "openrouter" else handle.openai_base_url
        )
        spec["limit_overrides"] = p.limit_overrides()
        spec["models"] = {p.model: {**spec["models"][p.model], "max_tokens": MAX_TOKENS}}
    table["pools"] = {POOL: [p.deployment for p in providers]}
    table["chain"] = [f"pool:{POOL}"]
    return table


def stack_env(sim: Any, providers: tuple[SimProvider, ...]) -> dict[str, str]:
    """What the local stack's functions need: the table and one key per provider (the simulator's)."""
    table = provider_table(sim, providers)
    env = {"STEPGRAPH_PROVIDERS": json.dumps(table)}
    for p in providers:
        env[table["providers"][p.name]["keys_env"]] = f"demo={DEV_KEY}"
    return env
