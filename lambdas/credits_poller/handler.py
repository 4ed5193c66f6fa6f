"""credits-poller: on a schedule, read each provider account's credits and free-tier use into metrics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.config import get_settings
from stepgraph.providers.credits import poll_all

logger = Logger(service="stepgraph")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = poll_all(get_settings())  # never raises: errors are logged and counted
    logger.info("credits polled", extra={"accounts": report})
    return {"accounts": report}
