"""validate-input: check the execution input and pick the Map mode before any item runs."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.config import get_settings
from stepgraph.runtime.clients import client
from stepgraph.runtime.validate import validate_execution

logger = Logger(service="stepgraph")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    out = validate_execution(event, bucket=settings.bucket, s3=client("s3", settings.endpoint_url))
    logger.info("input valid", extra={"graph": out["graph"], "mode": out["mode"], "items": out["item_count"]})
    return out
