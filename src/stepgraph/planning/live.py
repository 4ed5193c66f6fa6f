"""What the stack's limiter table says of an account right now, for `stepgraph plan --live`: the limits
learned from the provider (lowerings in force) and what today's day counters already hold. A forecast
that ignores them promises a full first day to an account whose quota is half spent, at a rate the
provider has already refused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.limiter import algorithm
from stepgraph.limiter.learned import LearnedLimits
from stepgraph.limiter.limits import Limit
from stepgraph.limiter.store import Store


@dataclass(frozen=True)
class LiveState:
    """One limiter key's state: `learned` maps a limit's name to the capacity in force (lower than the
    profile's), `used_today` a `utc_day` limit's name to the units its counter holds today."""

    learned: dict[str, int] = field(default_factory=dict)
    used_today: dict[str, int] = field(default_factory=dict)

    def apply(self, limits: list[Limit]) -> list[Limit]:
        """The limits with the learned capacities in force (never above the profile's)."""
        return [
            replace(lim, capacity=min(lim.capacity, self.learned[lim.name]))
            if lim.name in self.learned
            else lim
            for lim in limits
        ]


LiveReader = Callable[[str, list[Limit]], LiveState]


class LiveLimits:
    """Reads a key's `LiveState` from the limiter table (`store`), as the limiter keys it: learned
    lowerings under `{key}#learned`, day counters under `{key}#{limit}#{day}` (the scaled day in a
    time-scaled local run: the limits carry their day's length)."""

    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store, self.clock = store, clock

    def __call__(self, key: str, limits: list[Limit]) -> LiveState:
        now = self.clock.now()
        learned = LearnedLimits(lambda: self.store, key, self.clock).current()
        used = {}
        for lim in limits:
            if lim.kind != "utc_day":
                continue
            count = int((self.store.get(algorithm.item_pk(key, lim, now)) or {}).get("count", 0))
            if count:
                used[lim.name] = count
        return LiveState({name: ll.capacity for name, ll in learned.items()}, used)
