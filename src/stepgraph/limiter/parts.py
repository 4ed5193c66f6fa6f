"""What the limiter's mixins (`CachedView`, `GiveBack`) read of the `DynamoDBRateLimiter` they are part of,
declared once for the type checker: the limiter sets or defines each of them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepgraph.limiter.limits import Limit

if TYPE_CHECKING:
    from stepgraph.clock import Clock
    from stepgraph.limiter.store import Store


class LimiterParts:
    key: str
    limits: list[Limit]
    clock: Clock
    _paced: dict[str, Limit]

    # The limiter's store (LazyStore's), declared for the type checker only: no base order matters.
    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...

    def pk(self, limit: Limit, now: float) -> str:
        raise NotImplementedError

    def _remember(self, pk: str, item: dict[str, Any] | None) -> None:
        raise NotImplementedError
