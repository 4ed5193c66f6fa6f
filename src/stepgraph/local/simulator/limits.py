"""Per-account limits as providers count them: a sliding window of requests and of tokens, a UTC-day
counter of requests and of tokens, and (Ollama-style) concurrent requests. Every attempt that reaches the
account counts, failed ones too. Time is injected so the logic is tested without sleeping."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from stepgraph.clock import SYSTEM_CLOCK, Clock


@dataclass
class Decision:
    allowed: bool
    limit: int = 0
    remaining: int = 0
    reset_ms: int = 0
    retry_after_s: float = 0.0
    # When refused: "minute", "day", "concurrency", "tokens_minute", "tokens_day", or "too_large" (the
    # request alone asks more tokens than the minute's limit: it can never be admitted).
    scope: str = ""
    ticket: list[float] | None = None  # the admitted attempt's [ts, tokens] entry, for `settle`


@dataclass(frozen=True)
class Snapshot:
    """What a provider tells about its limits on a response (Groq/Cerebras send it on every one)."""

    rpm: int | None
    rpm_remaining: int
    rpm_reset_s: float
    rpd: int | None
    rpd_remaining: int
    rpd_reset_s: float
    tpm: int | None
    tpm_remaining: int
    tpm_reset_s: float
    tpd: int | None
    tpd_remaining: int


DAY_S = 86_400.0


def next_utc_midnight(ts: float, day_s: float = DAY_S) -> float:
    """Start of the next UTC day; with a time scale, days of `day_s` seconds counted from the epoch
    (the limiter's scaled days start at the same instants)."""
    if day_s >= DAY_S:
        day = datetime.fromtimestamp(ts, UTC).date() + timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return (ts // day_s + 1) * day_s


def _max_in_window(entries: list[tuple[float, float]], window_s: float) -> float:
    """Largest sum of weights in any sliding window (two pointers over time-sorted entries)."""
    entries = sorted(entries)
    best = total = 0.0
    lo = 0
    for t, w in entries:
        total += w
        while entries[lo][0] <= t - window_s:
            total -= entries[lo][1]
            lo += 1
        best = max(best, total)
    return best


class AccountLimits:
    """Thread-safe counters of one account (all its keys share them)."""

    def __init__(
        self,
        rpm: int | None,
        rpd: int | None,
        max_concurrency: int | None = None,
        *,
        tpm: int | None = None,
        tpd: int | None = None,
        time_scale: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.rpm, self.rpd, self.max_concurrency = rpm, rpd, max_concurrency
        self.tpm, self.tpd = tpm, tpd
        self.window_s = 60.0 * time_scale
        self.day_s = DAY_S * time_scale  # the time scale compresses the UTC day too
        self.clock = clock
        self._lock = threading.Lock()
        self._window: deque[float] = deque()  # admission times inside the current window
        self._tokens: deque[list[float]] = deque()  # [ts, tokens] of admissions inside the window
        self._admitted: list[
            list[float]
        ] = []  # every admission's [ts, tokens], for the max-in-window figures
        self._day = ""
        self._day_count = 0
        self._day_tokens = 0.0
        self.in_flight = 0
        self.max_in_flight = 0

    def _roll(self, now: float) -> None:
        while self._window and self._window[0] <= now - self.window_s:
            self._window.popleft()
        while self._tokens and self._tokens[0][0] <= now - self.window_s:
            self._tokens.popleft()
        day = (
            str(int(now // self.day_s))
            if self.day_s < DAY_S
            else datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        )
        if day != self._day:
            self._day, self._day_count, self._day_tokens = day, 0, 0.0

    def _minute_tokens(self) -> float:
        return sum(t for _, t in self._tokens)

    def _tokens_free_at(self, now: float, need: float) -> float:
        """When enough tokens have left the window for `need` more to fit."""
        used = self._minute_tokens()
        for ts, t in self._tokens:
            used -= t
            if used + need <= (self.tpm or 0):
                return ts + self.window_s
        return now + self.window_s

    def admit(self, tokens: int = 0) -> Decision:
        """Count one attempt that would use `tokens` (its estimate, or what the provider reserves).
        Refused attempts take no slot but are still requests."""
        with self._lock:
            now = self.clock.now()
            self._roll(now)
            if self.rpd is not None and self._day_count >= self.rpd:
                reset = next_utc_midnight(now, self.day_s)
                return Decision(False, self.rpd, 0, int(reset * 1000), reset - now, "day")
            if self.rpm is not None and len(self._window) >= self.rpm:
                reset = self._window[0] + self.window_s
                return Decision(False, self.rpm, 0, math.ceil(reset * 1000), reset - now, "minute")
            if self.tpm is not None and tokens > self.tpm:
                return Decision(False, self.tpm, 0, int(now * 1000), 0.0, "too_large")
            if self.tpd is not None and self._day_tokens + tokens > self.tpd:
                reset = next_utc_midnight(now, self.day_s)
                left = max(0, int(self.tpd - self._day_tokens))
                return Decision(False, self.tpd, left, int(reset * 1000), reset - now, "tokens_day")
            if self.tpm is not None and self._minute_tokens() + tokens > self.tpm:
                reset = self._tokens_free_at(now, tokens)
                left = max(0, int(self.tpm - self._minute_tokens()))
                return Decision(False, self.tpm, left, math.ceil(reset * 1000), reset - now, "tokens_minute")
            if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
                return Decision(False, self.max_concurrency, 0, int(now * 1000), 1.0, "concurrency")
            ticket = [now, float(tokens)]
            self._window.append(now)
            self._tokens.append(ticket)
            self._admitted.append(ticket)
            self._day_count += 1
            self._day_tokens += tokens
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            remaining = self.rpm - len(self._window) if self.rpm is not None else 0
            return Decision(True, self.rpm or 0, remaining, 0, ticket=ticket)

    def settle(self, decision: Decision, tokens: int) -> None:
        """Count what the attempt really used instead of its admission estimate (providers that reserve
        up front, as Cerebras does, keep the reservation: the caller does not settle then)."""
        if decision.ticket is None:
            return
        with self._lock:
            self._day_tokens += tokens - decision.ticket[1]
            decision.ticket[1] = float(tokens)

    def done(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self.clock.now()
            self._roll(now)
            day_reset = next_utc_midnight(now, self.day_s) - now
            minute_reset = (self._window[0] + self.window_s - now) if self._window else 0.0
            used_tokens = self._minute_tokens()
            token_reset = (self._tokens[0][0] + self.window_s - now) if self._tokens else 0.0

            def left(limit: int | None, used: float) -> int:
                return 0 if limit is None else max(0, int(limit - used))

            return Snapshot(
                self.rpm,
                left(self.rpm, len(self._window)),
                max(0.0, minute_reset),
                self.rpd,
                left(self.rpd, self._day_count),
                day_reset,
                self.tpm,
                left(self.tpm, used_tokens),
                max(0.0, token_reset),
                self.tpd,
                left(self.tpd, self._day_tokens),
            )

    @property
    def day_count(self) -> int:
        with self._lock:
            return self._day_count

    @property
    def day_tokens(self) -> int:
        with self._lock:
            return int(self._day_tokens)

    def max_in_window(self) -> int:
        """Largest number of admitted attempts in any sliding window."""
        with self._lock:
            entries = [(ts, 1.0) for ts, _ in self._admitted]
        return int(_max_in_window(entries, self.window_s))

    def max_tokens_in_window(self) -> int:
        """Largest number of tokens counted in any sliding window (as settled)."""
        with self._lock:
            entries = [(ts, t) for ts, t in self._admitted]
        return int(_max_in_window(entries, self.window_s))

    def admissions(self) -> list[float]:
        with self._lock:
            return sorted(ts for ts, _ in self._admitted)

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._tokens.clear()
            self._admitted.clear()
            self._day_count = 0
            self._day_tokens = 0.0
            self.in_flight = self.max_in_flight = 0
