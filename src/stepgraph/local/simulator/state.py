"""The simulator's mutable state: options, accounts, generations, request log, fault queue, outages."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.local.simulator.accounts import Accounts, build_accounts
from stepgraph.local.simulator.dialects import canonical


@dataclass
class SimOptions:
    """One simulated provider (`providers`: several, each a mapping of these fields, served side by side)."""

    rpm: int | None = 20
    rpd: int | None = 1000
    tpm: int | None = None
    tpd: int | None = None
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
    header_dialect: str = "openrouter"  # openrouter, groq (alias openai), cerebras or none (dialects.py)
    # Limits enforced and reported lower than the configured (documented) ones, e.g. {"rpm": 16}.
    reported_limits: dict[str, int] | None = None
    # Count input + max_completion_tokens (or, unset, the rest of the context) at admission and keep that
    # reservation, as Cerebras does; default: cerebras dialect only.
    reserve_completion: bool | None = None
    # Every model free and limited (Groq, Cerebras free tiers); default: all dialects but openrouter.
    free_tier: bool | None = None
    models: list[str] | None = None  # the model IDs this provider serves (default: the whole table)
    delisted: list[str] = field(default_factory=list)  # served no more: 404 "model not found"
    # Outages: [{"after_s": 5, "for_s": 10, "status": 503 | 502 | "connection"}], from the start.
    down: list[dict[str, Any]] = field(default_factory=list)
    providers: dict[str, dict[str, Any]] | None = None  # several providers, each under /NAME

    def __post_init__(self) -> None:
        self.header_dialect = canonical(self.header_dialect)
        if self.reserve_completion is None:
            self.reserve_completion = self.header_dialect == "cerebras"
        if self.free_tier is None:
            self.free_tier = self.header_dialect != "openrouter"
        for outage in self.down:
            Outage.from_json(outage, 0.0)  # a bad spec fails when the options are built


@dataclass(frozen=True)
class Outage:
    start: float
    end: float
    status: int | str  # 5xx, or "connection": the connection drops after the headers

    @classmethod
    def from_json(cls, raw: dict[str, Any], now: float) -> Outage:
        unknown = set(raw) - {"after_s", "for_s", "status"}
        if unknown or "for_s" not in raw:
            raise ValueError(f"an outage needs for_s (and may have after_s, status); got {sorted(raw)}")
        status = raw.get("status", 503)
        if status != "connection" and not (isinstance(status, int) and 500 <= status <= 599):
            raise ValueError(f"outage status {status!r}: use a 5xx code or 'connection'")
        start = now + float(raw.get("after_s", 0.0))
        return cls(start, start + float(raw["for_s"]), status)


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
    outages: list[Outage] = field(default_factory=list)
    delisted: set[str] = field(default_factory=set)
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
            tpm=o.tpm,
            tpd=o.tpd,
            reported_limits=o.reported_limits,
            clock=self.clock,
        )
        self.rng = random.Random(o.seed)
        self._start_outages()

    def _start_outages(self) -> None:
        now = self.clock.now()
        self.outages = [Outage.from_json(d, now) for d in self.options.down]
        self.delisted = set(self.options.delisted)

    def serves(self, model: str) -> bool:
        return self.options.models is None or model in self.options.models

    def outage_now(self) -> Outage | None:
        now = self.clock.now()
        with self.lock:
            return next((o for o in self.outages if o.start <= now < o.end), None)

    def go_down(self, raw: dict[str, Any]) -> Outage:
        outage = Outage.from_json(raw, self.clock.now())
        with self.lock:
            self.outages.append(outage)
        return outage

    def delist(self, model: str) -> None:
        with self.lock:
            self.delisted.add(model)

    def is_delisted(self, model: str) -> bool:
        with self.lock:
            return model in self.delisted

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
            if entry.get("connection_error"):
                self.counts["status_connection"] += 1
            elif status != 200:
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
            miw_tokens = lim.max_tokens_in_window()
            accounts[name] = {
                "rpm": lim.rpm,
                "rpd": lim.rpd,
                "tpm": lim.tpm,
                "tpd": lim.tpd,
                "documented": dict(a.documented),  # the configured limits, before any reported lowering
                "window_s": lim.window_s,
                "max_in_window": miw,
                "window_violations": max(0, miw - lim.rpm) if lim.rpm else 0,
                "max_tokens_in_window": miw_tokens,
                "token_window_violations": max(0, miw_tokens - lim.tpm) if lim.tpm else 0,
                "day_count": lim.day_count,
                "day_tokens": lim.day_tokens,
                "max_in_flight": lim.max_in_flight,
                "usage_usd": round(a.usage_usd, 10),
            }
        return {
            "header_dialect": self.options.header_dialect,
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
        self._start_outages()
        for a in self.accounts.accounts.values():
            a.limits.reset()
            a.usage_usd = 0.0
            a.revoked.clear()
