"""A distributed rate limiter and budget guard on one DynamoDB table.

limiter = DynamoDBRateLimiter("stepgraph-limiter", "openrouter:main", load_profile("openrouter-free"))
grant = limiter.try_acquire({"rpm": 1, "tpm": 1200})

Names load on first use (PEP 562): profiles and limits alone must not import LangChain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stepgraph.lazy import lazy_getattr

if TYPE_CHECKING:
    from stepgraph.limiter.budget import BudgetExceeded, BudgetGuard, BudgetReservation
    from stepgraph.limiter.limiter import DynamoDBRateLimiter
    from stepgraph.limiter.limits import Grant, Limit, LimiterUnavailable, RateLimited
    from stepgraph.limiter.profiles import PROFILES, load_profile
    from stepgraph.limiter.store import DynamoDBStore, MemoryStore
    from stepgraph.limiter.table import ensure_limiter_table

_HOME = {
    "BudgetExceeded": "budget",
    "BudgetGuard": "budget",
    "BudgetReservation": "budget",
    "DynamoDBRateLimiter": "limiter",
    "Grant": "limits",
    "Limit": "limits",
    "LimiterUnavailable": "limits",
    "RateLimited": "limits",
    "PROFILES": "profiles",
    "load_profile": "profiles",
    "DynamoDBStore": "store",
    "MemoryStore": "store",
    "ensure_limiter_table": "table",
}

__all__ = [
    "PROFILES",
    "BudgetExceeded",
    "BudgetGuard",
    "BudgetReservation",
    "DynamoDBRateLimiter",
    "DynamoDBStore",
    "Grant",
    "Limit",
    "LimiterUnavailable",
    "MemoryStore",
    "RateLimited",
    "ensure_limiter_table",
    "load_profile",
]


__getattr__ = lazy_getattr(__name__, _HOME, globals())
