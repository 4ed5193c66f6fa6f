"""The simulator's mutable state: options, accounts, generations, request log, fault queue."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.local.simulator.accounts import Accounts, build_accounts


@dataclass
class SimOptions:
    rpm: int | None = 20
    rpd: int | None = 1000
    max_concurrency: int | None = None
    credits_usd: float | None = 10.0
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    stream_error_rate: float = 0.0
    time_scale: float = 1.0
    seed: int = 0
    accounts: dict[str, Any] | None = None  # parsed --accounts file
    # OpenRouter's platform caps apply to free variants only; True limits paid models too.
    limit_paid: bool = False


@dataclass
class Fault:
    status: int | None = None
    retry_after_s: float | None = None
    stream_error: bool = False
    delay_ms: float = 0.0
    model: str | None = None
    limit_source: str | None = None
    # As real OpenRouter sometimes does: the error arrives with HTTP 200 as a top-level error body.
    error_body: bool = False
    # A 429 whose rate-limit headers are only in the body (upstream 429s), not on the HTTP response.
    body_headers_only: bool = False
    # A 429 whose X-RateLimit-Reset is already in the past.
    past_reset: bool = False

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Fault:
        allowed = {
            "status",
            "retry_after_s",
            "stream_error",
            "delay_ms",
            "model",
            "limit_source",
            "error_body",
            "body_headers_only",
            "past_reset",
        }
        unknown = set(raw) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**raw)


@dataclass
class SimState:
    options: SimOptions
    clock: Clock = SYSTEM_CLOCK
    accounts: Accounts = field(init=False)
    generations: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    faults: list[Fault] = field(default_factory=list)
    seen_prompts: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        o = self.options
        self.accounts = build_accounts(
            o.accounts,
            rpm=o.rpm,
            rpd=o.rpd,
            max_concurrency=o.max_concurrency,
            credits_usd=o.credits_usd,
            time_scale=o.time_scale,
            clock=self.clock,
        )
        self.rng = random.Random(o.seed)

    def next_fault(self, model: str) -> Fault | None:
        with self.lock:
            for i, f in enumerate(self.faults):
                if f.model is None or f.model == model:
                    return self.faults.pop(i)
        return None

    def roll(self, rate: float) -> bool:
        with self.lock:
            return rate > 0 and self.rng.random() < rate

    def jitter_ms(self) -> float:
        o = self.options
        with self.lock:
            return o.latency_ms + (self.rng.uniform(-o.jitter_ms, o.jitter_ms) if o.jitter_ms else 0.0)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)
            self.counts["requests"] += 1
            status = entry["status"]
            failed_200 = entry.get("stream_error") or entry.get("error_body")  # an error sent with HTTP 200
            if status == 200 and not failed_200:
                self.counts["ok"] += 1
            elif status == 429:
                self.counts["rate_limited"] += 1
            if status != 200:
                self.counts[f"status_{status}"] += 1
            elif failed_200:
                self.counts["status_stream_error" if entry.get("stream_error") else "status_error_body"] += 1

    def new_generation_id(self) -> str:
        return "gen-" + uuid.uuid4().hex[:24]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            counts = dict(self.counts)
        errors = {k.removeprefix("status_"): v for k, v in counts.items() if k.startswith("status_")}
        accounts = {}
        for name, a in self.accounts.accounts.items():
            lim = a.limits
            miw = lim.max_in_window()
            accounts[name] = {
                "rpm": lim.rpm,
                "rpd": lim.rpd,
                "window_s": lim.window_s,
                "max_in_window": miw,
                "window_violations": max(0, miw - lim.rpm) if lim.rpm else 0,
                "day_count": lim.day_count,
                "max_in_flight": lim.max_in_flight,
                "usage_usd": round(a.usage_usd, 10),
            }
        return {
            "requests": counts.get("requests", 0),
            "ok": counts.get("ok", 0),
            "rate_limited": counts.get("rate_limited", 0),
            "errors_by_status": errors,
            "max_in_flight": max(
                (a.limits.max_in_flight for a in self.accounts.accounts.values()), default=0
            ),
            "accounts": accounts,
        }

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self.counts.clear()
            self.faults.clear()
            self.generations.clear()
            self.seen_prompts.clear()
        for a in self.accounts.accounts.values():
            a.limits.reset()
            a.usage_usd = 0.0
            a.revoked.clear()
