"""graph-step: run an item's graph from its checkpoint until done, throttled or out of time."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepgraph.resources import SERVICE_NAME
from stepgraph.runtime.deps import Container
from stepgraph.runtime.wiring import run_graph_step
from stepgraph.schemas import parse_step_event

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
container = Container()  # kept while the container is warm: limiter caches, key rings, clients


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = container.get(os.environ)
    step = parse_step_event(event)  # InvalidInput names the field
    logger.append_keys(
        execution_id=step.execution_id, item_id=step.item_id, thread_id=step.thread_id, graph=step.graph
    )
    result = run_graph_step(
        step, deps=deps, remaining_ms=context.get_remaining_time_in_millis, request_id=context.aws_request_id
    )
    logger.info(
        "step ended", extra={"status": result.status, "steps": result.steps, "last_nodes": result.last_nodes}
    )
    return result.model_dump(mode="json")
