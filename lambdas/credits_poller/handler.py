"""credits-poller: on a schedule, read each provider account's credits and free-tier use into metrics."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.providers.credits import poll_all
from stepgraph.resources import SERVICE_NAME
from stepgraph.runtime.deps import Container

logger = Logger(service=SERVICE_NAME)
container = Container()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = container.get(os.environ)
    # In AWS the keys live only in Secrets Manager; locally they may come from the environment.
    report = poll_all(deps.table, env=deps.env, secrets_client=deps.secrets, emitter=deps.metrics())
    logger.info("credits polled", extra={"accounts": report})  # poll_all never raises: errors are counted
    return {"accounts": report}
