"""usage-compaction: on a schedule, merge each finished UTC day's usage JSONL into Parquet."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.resources import SERVICE_NAME
from stepgraph.runtime.deps import Container
from stepgraph.usage.compact import CompactionRequest, compact
from stepgraph.usage.lake import S3Lake

logger = Logger(service=SERVICE_NAME)
container = Container()  # this container's settings and S3 client, built on the first call


@logger.inject_lambda_context(clear_state=True)
@event_parser(model=CompactionRequest)
def handler(event: CompactionRequest, context: LambdaContext) -> dict[str, Any]:
    deps = container.get(os.environ)
    lake = S3Lake(deps.settings.bucket, deps.s3)
    summary = compact(lake, days=event.days)  # None: every finished day
    logger.info("usage compacted", extra={"days": summary})
    return {"days": summary}
