"""credits-poller: on a schedule, read each provider account's balance, credits and free-tier use, and
the budget guard's spend today, into metrics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph import resources
from stepgraph.config import get_settings
from stepgraph.limiter.budget import BudgetGuard
from stepgraph.providers.credits import limiter_day_count, poll_all, publish_spent_today
from stepgraph.providers.metrics import MetricsEmitter
from stepgraph.runtime import clients

logger = Logger(service="stepgraph")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    # In AWS the keys (and the management key) live only in Secrets Manager; locally they may come
    # from the environment.
    secrets = clients.client("secretsmanager", settings.endpoint_url)
    dynamodb = clients.client("dynamodb", settings.dynamodb_endpoint_url or settings.endpoint_url)
    emitter = MetricsEmitter()
    report = poll_all(  # never raises: errors are logged and counted
        settings,
        emitter=emitter,
        secrets_client=secrets,
        day_count=limiter_day_count(settings.limiter_table, dynamodb),
    )
    guard = BudgetGuard(settings.limiter_table, resources.BUDGET_KEY, client=dynamodb)
    spent = publish_spent_today(guard, emitter)
    logger.info("credits polled", extra={"accounts": report, "spent_today_usd": spent})
    return {"accounts": report, "spent_today_usd": spent}
