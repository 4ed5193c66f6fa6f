"""A distributed rate limiter and budget guard on one DynamoDB table.

limiter = DynamoDBRateLimiter("stepgraph-limiter", "openrouter:main", load_profile("openrouter-free"))
grant = limiter.try_acquire({"rpm": 1, "tpm": 1200})
"""

from stepgraph.limiter.budget import BudgetExceeded, BudgetGuard, BudgetReservation
from stepgraph.limiter.limiter import DynamoDBRateLimiter
from stepgraph.limiter.limits import Grant, Limit, LimiterUnavailable, RateLimited
from stepgraph.limiter.profiles import PROFILES, load_profile
from stepgraph.limiter.store import DynamoDBStore, MemoryStore
from stepgraph.limiter.table import ensure_limiter_table

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
