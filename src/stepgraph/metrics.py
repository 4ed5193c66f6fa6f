"""CloudWatch metric names (the namespace is `resources.METRIC_NAMESPACE`), shared by emitters, alarms and the dashboard."""

from __future__ import annotations

# The namespace is `stepgraph.resources.METRIC_NAMESPACE` (infra and the emitters read it there).

CREDITS_SPENT_USD = "CreditsSpentUSD"
PROMPT_TOKENS = "PromptTokens"
COMPLETION_TOKENS = "CompletionTokens"
REQUESTS = "Requests"
RATE_LIMITED = "RateLimited"
PROVIDER_ERRORS = "ProviderErrors"
FALLBACKS = "Fallbacks"
LIMITER_WAIT_MS = "LimiterWaitMs"
CREDITS_REMAINING_USD = "CreditsRemainingUSD"
USAGE_DAILY_USD = "UsageDailyUSD"
FREE_REQUESTS_REMAINING = "FreeRequestsRemaining"
INCOMPLETE_REPLIES = "IncompleteReplies"  # finish_reason length or empty content
# 1 when the poller learned an account's balance, 0 when it could not (no management key, uncapped
# key); emitted once per account per successful poll, so its absence means the poller is down.
CREDITS_KNOWN = "CreditsKnown"
# The budget guard's counter of the current UTC day (spent or reserved), published by the poller:
# the very number the daily cap is checked against.
SPENT_TODAY_USD = "SpentTodayUSD"
# A deployment's limit lowered from the provider's answers (the value is the new capacity).
LEARNED_LIMIT = "LearnedLimit"
# A deployment's shared circuit breaker opened (its workers skip it for the cooldown).
BREAKER_OPEN = "BreakerOpen"

ALL = (
    CREDITS_SPENT_USD,
    PROMPT_TOKENS,
    COMPLETION_TOKENS,
    REQUESTS,
    RATE_LIMITED,
    PROVIDER_ERRORS,
    FALLBACKS,
    LIMITER_WAIT_MS,
    CREDITS_REMAINING_USD,
    USAGE_DAILY_USD,
    FREE_REQUESTS_REMAINING,
    INCOMPLETE_REPLIES,
    CREDITS_KNOWN,
    SPENT_TODAY_USD,
    LEARNED_LIMIT,
    BREAKER_OPEN,
)
