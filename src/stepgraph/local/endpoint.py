"""`stepgraph local up`: a moto server and the simulator on loopback, with the stack's resources, so boto3
or the AWS CLI (`--endpoint-url`) can start and describe executions exactly as against AWS."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from stepgraph import resources
from stepgraph.local.s3_index import prefix_index
from stepgraph.local.simulator import DEV_KEY, running_simulator
from stepgraph.local.stack import (
    MOTO_CONFIG,
    REGION,
    LocalStack,
    _create_functions,
    _route_invocations,
    local_definition,
)


@dataclass
class Endpoint:
    url: str
    simulator_url: str
    state_machine_arn: str
    bucket: str


@contextmanager
def local_endpoint(
    *, port: int = 5000, rpm: int = 20, rpd: int = 1000, time_scale: float = 0.05
) -> Iterator[Endpoint]:
    import boto3
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    from stepgraph.limiter.table import ensure_limiter_table
    from stepgraph.local import lambdas, map_runs
    from stepgraph.local.ports import ensure_free

    ensure_free(port)
    map_runs.install()  # per-item child executions of a Distributed Map, as on AWS
    with ExitStack() as stack:
        sim = stack.enter_context(running_simulator(rpm=rpm, rpd=rpd, time_scale=time_scale))
        default_user_config.update(MOTO_CONFIG)  # type: ignore[typeddict-item]
        stack.enter_context(mock.patch.dict(os.environ, {"MOTO_PORT": str(port)}))
        # werkzeug prints one access-log line per AWS call unless its logger is configured: keep the
        # terminal for what `local up` says.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        stack.enter_context(prefix_index())  # moto scans the whole bucket per prefix listing otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        stack.callback(server.stop)
        url = f"http://127.0.0.1:{port}"
        env = {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "STEPGRAPH_ENDPOINT_URL": url,
            # moto's Step Functions reaches Lambda and S3 (aws-sdk tasks) through its own port.
            "MOTO_PORT": str(port),
            "STEPGRAPH_TIME_SCALE": str(time_scale),
            "STEPGRAPH_STEP_MARGIN_S": "1",
            "STEPGRAPH_LIMIT_MARGIN": "0.05",
            "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
            "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
            "OPENROUTER_API_KEY": f"local={DEV_KEY}",
            "OLLAMA_API_KEY": f"local={DEV_KEY}",
            "STEPGRAPH_LIMITS_OVERRIDES": json.dumps({"rpm": {"capacity": rpm}, "rpd": {"capacity": rpd}}),
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        stack.enter_context(mock.patch.dict(os.environ, env))
        lambdas.cold_start()  # the functions' containers start with this endpoint's environment
        ref: list[LocalStack] = []
        stack.enter_context(
            mock.patch.object(LambdaSimpleBackend, "invoke", _route_invocations(ref, threading.Lock()))
        )

        def client(service: str) -> Any:
            return boto3.session.Session().client(service, endpoint_url=url, region_name=REGION)  # type: ignore[call-overload]

        client("s3").create_bucket(Bucket=resources.DATA_BUCKET_NAME)
        ensure_limiter_table(client("dynamodb"), resources.LIMITER_TABLE_NAME)
        _create_functions(client("lambda"), client("iam"))
        definition = local_definition()
        arn = client("stepfunctions").create_state_machine(
            name=resources.STATE_MACHINE_NAME,
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/stepgraph-local",
        )["stateMachineArn"]
        ref.append(LocalStack(arn, resources.DATA_BUCKET_NAME, resources.LIMITER_TABLE_NAME, None))
        try:
            yield Endpoint(url, sim.base_url, arn, resources.DATA_BUCKET_NAME)
        finally:
            lambdas.cold_start()
