"""validate-input: check the execution input and pick the Map mode before any item runs."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.resources import SERVICE_NAME
from stepgraph.runtime.deps import Container
from stepgraph.runtime.validate import validate_execution

logger = Logger(service=SERVICE_NAME)
container = Container()  # this container's settings, clients and provider table, built on the first call


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = container.get(os.environ)
    out = validate_execution(
        event,
        bucket=deps.settings.bucket,
        s3=deps.s3,
        table=deps.table,
        graphs=deps.graphs,
        roles=deps.graph_roles,
        map_concurrency=deps.settings.map_concurrency,
        limits_overrides=deps.settings.limits_overrides,
    )
    logger.info("input valid", extra={"graph": out["graph"], "mode": out["mode"], "items": out["item_count"]})
    return out
