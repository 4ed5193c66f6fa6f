"""The stack's resources on moto, with Step Functions executing the real ASL and Lambda invocations
routed to the real handler files in this process.

Names come from `stepgraph.resources`, the same module the CDK app uses. The limiter table lives in
DynamoDB Local when Java is there (real concurrent conditional writes), else in moto with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from stepgraph import resources
from stepgraph.local.asl import load_definition
from stepgraph.local.s3_index import prefix_index

log = logging.getLogger(__name__)
# moto's interpreter warns at every parse that ToleratedFailurePercentagePath has no effect there; AWS
# applies it. Keep the terminal for what the demo says.
logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
ACCOUNT = "123456789012"
REGION = "us-east-1"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def local_definition() -> dict[str, Any]:
    """The state machine definition with the local stand-ins' names, as CDK fills it with the stack's."""
    return load_definition(
        {
            "ValidateFunctionArn": function_arn(resources.VALIDATE_FUNCTION),
            "GraphStepFunctionArn": function_arn(resources.GRAPH_STEP_FUNCTION),
            "DataBucketName": resources.DATA_BUCKET_NAME,
        }
    )


@dataclass
class LocalStack:
    state_machine_arn: str
    bucket: str
    limiter_table: str
    dynamodb_endpoint: str | None
    invocations: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[Callable[[str, Any], None]] = field(default_factory=list)  # fault injection before a call
    timeout_s: float = 900.0  # the functions' timeout: a handler that overruns it is reported as Lambda does

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session().client(service, region_name=REGION)  # type: ignore[call-overload]

    def cold_start(self) -> None:
        """The functions' next calls start new containers (fresh settings, clients, limiters, key rings)."""
        from stepgraph.local import lambdas

        lambdas.cold_start()

    def dynamodb_client(self) -> Any:
        """A client of the limiter table (DynamoDB Local when it runs, else moto)."""
        import boto3

        return boto3.session.Session().client(  # type: ignore[call-overload]
            "dynamodb", region_name=REGION, endpoint_url=self.dynamodb_endpoint
        )


class _TimedOut(Exception):
    error_type = "Sandbox.Timedout"  # what Step Functions sees when Lambda kills an overrunning function


def _route_invocations(stack_ref: list[LocalStack], lock: threading.Lock) -> Any:
    """Replace moto's Lambda invoke: decode the body, call the handler, answer as Lambda does."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    from stepgraph.local.lambdas import HANDLERS, FakeLambdaContext, load_handler

    original = LambdaSimpleBackend.invoke

    def invoke(
        self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
    ) -> Any:
        name = function_name.rsplit(":", 1)[-1]
        if name not in HANDLERS:
            return original(self, function_name, qualifier, body, headers, response_headers)
        event = json.loads(body) if body else {}
        stack = stack_ref[0]
        try:
            for hook in stack.hooks:
                hook(name, event)
            started = time.monotonic()
            result = load_handler(HANDLERS[name])(event, FakeLambdaContext(name, stack.timeout_s))
            if time.monotonic() - started > stack.timeout_s:
                raise _TimedOut(
                    f"Task timed out after {stack.timeout_s:.2f} seconds (ran {time.monotonic() - started:.2f} s)"
                )
            with lock:
                status = result.get("status") if isinstance(result, dict) else None
                stack.invocations.append(
                    {"function": name, "ok": True, "status": status, "elapsed_s": time.monotonic() - started}
                )
            return json.dumps(result, default=str).encode()
        except Exception as exc:  # reported the way Lambda reports an unhandled error
            with lock:
                stack.invocations.append(
                    {"function": name, "ok": False, "error": type(exc).__name__, "message": str(exc)[:300]}
                )
            response_headers["x-amz-function-error"] = "Unhandled"
            # Faults may pose as Lambda service errors (`error_type`), which the ASL retries.
            error_type = getattr(exc, "error_type", type(exc).__name__)
            return json.dumps({"errorType": error_type, "errorMessage": str(exc)}).encode()

    return invoke


def _create_functions(lam: Any, iam: Any) -> None:
    import io
    import zipfile

    role = iam.create_role(
        RoleName="stepgraph-local",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return event\n")
    for name in (
        resources.VALIDATE_FUNCTION,
        resources.GRAPH_STEP_FUNCTION,
        resources.CREDITS_POLLER_FUNCTION,
    ):
        lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": buf.getvalue()},
        )


@contextmanager
def local_stack(
    *, use_dynamodb_local: bool = True, env: dict[str, str] | None = None
) -> Iterator[LocalStack]:
    """Start moto (in this process), create the stack's resources and route Lambda calls to the handlers."""
    from unittest import mock

    import boto3
    from moto import mock_aws
    from moto.awslambda_simple.models import LambdaSimpleBackend

    from stepgraph.limiter.dynamodb_local import find_jar, java_available, start_dynamodb_local
    from stepgraph.limiter.table import ensure_limiter_table
    from stepgraph.local import lambdas

    with ExitStack() as stack:
        ddb_endpoint = None
        if use_dynamodb_local and java_available() and find_jar():
            ddb_endpoint = stack.enter_context(start_dynamodb_local())
        elif use_dynamodb_local:
            log.warning("Java or DynamoDB Local missing: the limiter table runs in moto (run `make setup`)")
        settings_env = {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            resources.ENV_BUCKET: resources.DATA_BUCKET_NAME,
            resources.ENV_LIMITER_TABLE: resources.LIMITER_TABLE_NAME,
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **({"STEPGRAPH_DYNAMODB_ENDPOINT_URL": ddb_endpoint} if ddb_endpoint else {}),
            **(env or {}),
        }
        stack.enter_context(mock.patch.dict(os.environ, settings_env))
        lambdas.cold_start()  # the functions' containers start with this stack's environment
        stack.enter_context(mock_aws(config=MOTO_CONFIG))  # type: ignore[call-overload]
        stack.enter_context(prefix_index())  # moto scans the whole bucket per prefix listing otherwise
        ref: list[LocalStack] = []
        stack.enter_context(
            mock.patch.object(LambdaSimpleBackend, "invoke", _route_invocations(ref, threading.Lock()))
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=resources.DATA_BUCKET_NAME)
        ddb = (
            boto3.client("dynamodb", region_name=REGION, endpoint_url=ddb_endpoint)
            if ddb_endpoint
            else boto3.client("dynamodb", region_name=REGION)
        )
        ensure_limiter_table(ddb, resources.LIMITER_TABLE_NAME)
        _create_functions(boto3.client("lambda", region_name=REGION), boto3.client("iam", region_name=REGION))
        definition = local_definition()
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name=resources.STATE_MACHINE_NAME,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/stepgraph-local",
        )["stateMachineArn"]
        ref.append(LocalStack(arn, resources.DATA_BUCKET_NAME, resources.LIMITER_TABLE_NAME, ddb_endpoint))
        try:
            yield ref[0]
        finally:
            lambdas.cold_start()
