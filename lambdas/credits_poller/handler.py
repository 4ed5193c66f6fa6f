"""credits-poller: on a schedule, read each provider account's balance, credits and free-tier use, and
the budget guard's spend today, into metrics."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.limiter.budget import BudgetGuard
from stepgraph.providers.credits import limiter_day_count, poll_all, publish_spent_today
from stepgraph.resources import BUDGET_KEY, SERVICE_NAME
from stepgraph.runtime.deps import Container

logger = Logger(service=SERVICE_NAME)
container = Container()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = container.get(os.environ)
    settings, emitter = deps.settings, deps.metrics()
    # In AWS the keys (and the management key) live only in Secrets Manager; locally they may come
    # from the environment.
    report = poll_all(  # never raises: errors are logged and counted
        settings,
        table=deps.table,
        env=deps.env,
        emitter=emitter,
        secrets_client=deps.secrets,
        day_count=limiter_day_count(settings.limiter_table, deps.dynamodb),
    )
    guard = BudgetGuard(settings.limiter_table, BUDGET_KEY, client=deps.dynamodb)
    spent = publish_spent_today(guard, emitter)
    logger.info("credits polled", extra={"accounts": report, "spent_today_usd": spent})
    return {"accounts": report, "spent_today_usd": spent}
