"""usage-compaction: on a schedule, merge each finished UTC day's usage JSONL into Parquet."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.config import get_settings
from stepgraph.runtime import clients
from stepgraph.usage.compact import CompactionRequest, compact
from stepgraph.usage.lake import S3Lake

logger = Logger(service="stepgraph")


@logger.inject_lambda_context(clear_state=True)
@event_parser(model=CompactionRequest)
def handler(event: CompactionRequest, context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    lake = S3Lake(settings.bucket, clients.client("s3", settings.endpoint_url))
    summary = compact(lake, days=event.days)  # None: every finished day
    logger.info("usage compacted", extra={"days": summary})
    return {"days": summary}
