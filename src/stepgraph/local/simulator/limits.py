"""Per-account limits as OpenRouter counts them: a sliding window, a UTC-day counter and
(Ollama-style) concurrent requests. Every attempt that reaches the account counts, failed
ones too. Time is injected so the logic is tested without sleeping."""

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
    scope: str = ""  # "minute", "day" or "concurrency" when refused


DAY_S = 86_400.0


def next_utc_midnight(ts: float, day_s: float = DAY_S) -> float:
    """Start of the next UTC day; with a time scale, days of `day_s` seconds counted from the epoch
    (the limiter's scaled days start at the same instants)."""
    if day_s >= DAY_S:
        day = datetime.fromtimestamp(ts, UTC).date() + timedelta(days=1)
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return (ts // day_s + 1) * day_s


class AccountLimits:
    """Thread-safe counters of one account (all its keys share them)."""

    def __init__(
        self,
        rpm: int | None,
        rpd: int | None,
        max_concurrency: int | None = None,
        *,
        time_scale: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.rpm, self.rpd, self.max_concurrency = rpm, rpd, max_concurrency
        self.window_s = 60.0 * time_scale
        self.day_s = DAY_S * time_scale  # the time scale compresses the UTC day too
        self.clock = clock
        self._lock = threading.Lock()
        self._window: deque[float] = deque()  # admission times inside the current window
        self._admitted: list[float] = []  # every admission, for max_in_window
        self._day = ""
        self._day_count = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def _roll(self, now: float) -> None:
        while self._window and self._window[0] <= now - self.window_s:
            self._window.popleft()
        day = (
            str(int(now // self.day_s))
            if self.day_s < DAY_S
            else datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        )
        if day != self._day:
            self._day, self._day_count = day, 0

    def admit(self) -> Decision:
        """Count one attempt. Refused attempts do not take a slot but are still requests."""
        with self._lock:
            now = self.clock.now()
            self._roll(now)
            if self.rpd is not None and self._day_count >= self.rpd:
                reset = next_utc_midnight(now, self.day_s)
                return Decision(False, self.rpd, 0, int(reset * 1000), reset - now, "day")
            if self.rpm is not None and len(self._window) >= self.rpm:
                reset = self._window[0] + self.window_s
                return Decision(False, self.rpm, 0, math.ceil(reset * 1000), reset - now, "minute")
            if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
                return Decision(False, self.max_concurrency, 0, int(now * 1000), 1.0, "concurrency")
            self._window.append(now)
            self._admitted.append(now)
            self._day_count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            remaining = self.rpm - len(self._window) if self.rpm is not None else 0
            return Decision(True, self.rpm or 0, remaining, 0)

    def done(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    @property
    def day_count(self) -> int:
        with self._lock:
            return self._day_count

    def max_in_window(self) -> int:
        """Largest number of admitted attempts in any sliding window (two pointers over sorted times)."""
        with self._lock:
            times = sorted(self._admitted)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while times[lo] <= t - self.window_s:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def reset(self) -> None:
        with self._lock:
            self._window.clear()
            self._admitted.clear()
            self._day_count = 0
            self.in_flight = self.max_in_flight = 0
