"""Simulated provider accounts: keys (with labels), credits and limits.

`--accounts FILE` (YAML or JSON):

    accounts:
      main:
        keys: {sk-sim-dev: dev, sk-sim-second: second}
        credits_usd: 5.0          # the account balance (GET /api/v1/credits: total_credits)
        key_limit_usd: null       # every key's own spending cap (GET /api/v1/key: limit); null: uncapped
        management_keys: {sk-sim-mgmt: management}   # read /api/v1/credits, cannot make model calls
        rpm: 20
        rpd: 1000
        max_concurrency: null
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.errors import ConfigError
from stepgraph.local.simulator.limits import AccountLimits

DEV_KEY = "sk-sim-dev"
DEV_MANAGEMENT_KEY = "sk-sim-mgmt"


@dataclass
class Account:
    name: str
    keys: dict[str, str]  # key -> label
    limits: AccountLimits
    credits_usd: float | None = 10.0  # None: unlimited
    usage_usd: float = 0.0
    management_keys: dict[str, str] = field(default_factory=dict)  # key -> label
    key_limit_usd: float | None = None  # each key's cap (counted on the account's usage); None: uncapped
    revoked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, usd: float) -> None:
        with self.lock:
            self.usage_usd += usd

    def credits_left(self) -> float | None:
        with self.lock:
            return None if self.credits_usd is None else max(0.0, self.credits_usd - self.usage_usd)

    def key_limit_left(self) -> float | None:
        with self.lock:
            return None if self.key_limit_usd is None else max(0.0, self.key_limit_usd - self.usage_usd)

    def spendable(self) -> float | None:
        """What a paid call may still cost: the balance and the key's cap, whichever is less."""
        left = [v for v in (self.credits_left(), self.key_limit_left()) if v is not None]
        return min(left) if left else None


class Accounts:
    def __init__(self, accounts: list[Account]) -> None:
        self.accounts = {a.name: a for a in accounts}
        self._by_key = {k: a for a in accounts for k in a.keys}
        self._by_management_key = {k: a for a in accounts for k in a.management_keys}

    def by_key(self, key: str) -> Account | None:
        return self._by_key.get(key)

    def by_management_key(self, key: str) -> Account | None:
        account = self._by_management_key.get(key)
        return None if account is None or key in account.revoked else account

    def revoke(self, key: str) -> bool:
        account = self._by_key.get(key) or self._by_management_key.get(key)
        if account is None:
            return False
        account.revoked.add(key)
        return True


def build_accounts(
    spec: dict[str, Any] | None,
    *,
    rpm: int | None,
    rpd: int | None,
    max_concurrency: int | None,
    credits_usd: float | None,
    time_scale: float,
    clock: Clock = SYSTEM_CLOCK,
) -> Accounts:
    """Accounts from a parsed file, or one account holding the dev key; flags give the defaults."""
    entries = (spec or {}).get("accounts") or {
        "default": {"keys": {DEV_KEY: "dev"}, "management_keys": {DEV_MANAGEMENT_KEY: "management"}}
    }
    accounts = []
    for name, raw in entries.items():
        if not isinstance(raw, dict) or not raw.get("keys"):
            raise ConfigError(f"simulator accounts: account {name!r} needs a 'keys' mapping (key: label)")
        keys = raw["keys"]
        if isinstance(keys, list):
            keys = {k: f"key{i + 1}" for i, k in enumerate(keys)}
        limits = AccountLimits(
            raw.get("rpm", rpm),
            raw.get("rpd", rpd),
            raw.get("max_concurrency", max_concurrency),
            time_scale=time_scale,
            clock=clock,
        )
        management = raw.get("management_keys") or {}
        if isinstance(management, list):
            management = {k: f"management{i + 1}" for i, k in enumerate(management)}
        accounts.append(
            Account(
                name,
                {str(k): str(v) for k, v in keys.items()},
                limits,
                raw.get("credits_usd", credits_usd),
                management_keys={str(k): str(v) for k, v in management.items()},
                key_limit_usd=raw.get("key_limit_usd"),
            )
        )
    return Accounts(accounts)


def load_accounts_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"simulator accounts file {p} not found", hint="pass --accounts with an existing YAML/JSON file"
        )
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else f"line {getattr(exc, 'lineno', '?')}"
        reason = getattr(exc, "problem", None) or getattr(exc, "msg", None) or type(exc).__name__
        kind = "JSON" if p.suffix == ".json" else "YAML"
        raise ConfigError(f"simulator accounts file {p}: not valid {kind} ({reason}, {where})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"simulator accounts file {p}: expected a mapping with 'accounts'")
    return data
