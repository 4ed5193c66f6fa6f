"""Several simulated providers at once, each under its own path: `/{name}/v1` (OpenAI-style) and
`/{name}/api/v1` (OpenRouter-style), each with its own accounts, limits, header dialect and faults.

`--providers FILE` (YAML/JSON), or `SimOptions(providers=...)`:

    providers:
      openrouter: {rpm: 20, rpd: 50, reported_limits: {rpm: 16}}
      groq: {}                           # the groq profile: 30 rpm, 1,000/day, 8,000 tokens/min, ...
      cerebras: {tpm: 60000}
      ollama: {max_concurrency: 1}
      spare: {profile: groq, rpm: 10}    # another name, a built-in profile
      flaky: {profile: nvidia, down: [{after_s: 30, for_s: 60, status: 503}]}

Each entry takes the single provider's options (`SimOptions` fields); `profile` (default: the entry's name
when it names one) fills the published free-tier figures first (docs/providers.md; volatile, overridable).
`time_scale`, `seed`, `latency_ms` and `jitter_ms` come from the top level unless an entry sets its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.errors import ConfigError
from stepgraph.local.simulator.state import SimOptions, SimState

PROFILES: dict[str, dict[str, Any]] = {
    "openrouter": {"header_dialect": "openrouter", "rpm": 20, "rpd": 50},
    "groq": {
        "header_dialect": "groq",
        "rpm": 30,
        "rpd": 1000,
        "tpm": 8000,
        "tpd": 200_000,
        "models": ["openai/gpt-oss-120b"],
    },
    "cerebras": {
        "header_dialect": "cerebras",
        "rpm": 30,
        "rpd": 14_400,
        "tpm": 60_000,
        "tpd": 1_000_000,
        "models": ["gpt-oss-120b"],
    },
    "nvidia": {"header_dialect": "none", "rpm": 40, "rpd": None, "models": ["openai/gpt-oss-120b"]},
    "ollama": {
        "header_dialect": "none",
        "rpm": None,
        "rpd": None,
        "max_concurrency": 1,
        "models": ["gpt-oss:120b"],
    },
}
INHERITED = ("time_scale", "seed", "latency_ms", "jitter_ms")
_FIELDS = {f.name for f in dataclasses.fields(SimOptions)} - {"providers"}


def provider_options(name: str, raw: Any, top: SimOptions) -> SimOptions:
    """One entry of `providers` as the options of a single provider; errors name the entry."""
    where = f"simulator providers.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(raw).__name__}")
    raw = dict(raw)
    profile = raw.pop("profile", name if name in PROFILES else None)
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"{where}: unknown profile {profile!r}", hint=f"use one of {', '.join(PROFILES)}")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(
            f"{where}: unknown options {sorted(unknown)}", hint=f"known: {', '.join(sorted(_FIELDS))}"
        )
    merged = {k: getattr(top, k) for k in INHERITED}
    merged["seed"] = top.seed + sum(map(ord, name))  # independent dice per provider
    merged.update(PROFILES.get(profile or "", {}))
    merged.update(raw)
    try:
        return SimOptions(**merged)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass
class PoolState:
    """The providers of one simulator process, by name."""

    options: SimOptions
    clock: Clock = SYSTEM_CLOCK
    providers: dict[str, SimState] = field(init=False)

    def __post_init__(self) -> None:
        spec = self.options.providers or {}
        if not spec:
            raise ConfigError("simulator providers: name at least one provider")
        for name in spec:
            if not name.replace("-", "").replace("_", "").isalnum() or name.startswith("_"):
                raise ConfigError(
                    f"simulator providers.{name}: a name is one path segment (letters, digits, - _)"
                )
        self.providers = {
            name: SimState(provider_options(name, raw, self.options), clock=self.clock)
            for name, raw in spec.items()
        }

    def stats(self) -> dict[str, Any]:
        return {"providers": {name: s.stats() for name, s in self.providers.items()}}

    def reset(self) -> None:
        for s in self.providers.values():
            s.reset()


def make_state(options: SimOptions, clock: Clock = SYSTEM_CLOCK) -> SimState | PoolState:
    return PoolState(options, clock) if options.providers else SimState(options, clock=clock)
