"""The stack's resources on a moto server on loopback, with Step Functions executing the real ASL and each
Lambda function running in its own worker processes (`stepgraph.local.workers`), as on AWS.

Names come from `stepgraph.resources`, the same module the CDK app uses. The functions get the environment
the CDK stack gives them plus the local endpoints; this process's environment is left alone. The limiter
table lives in DynamoDB Local when Java is there (real concurrent conditional writes), else in moto with a
warning.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from stepgraph import resources
from stepgraph.local.asl import load_definition
from stepgraph.local.lambdas import HANDLERS
from stepgraph.local.s3_index import prefix_index
from stepgraph.local.workers import FunctionConfig, Invocation, LambdaRuntime

log = logging.getLogger(__name__)
# moto's interpreter warns at every parse that ToleratedFailurePercentagePath has no effect there; AWS
# applies it. Keep the terminal for what the demo says.
logging.getLogger("moto.stepfunctions.parser.asl.parse.preprocessor").setLevel(logging.ERROR)
ACCOUNT = "123456789012"
REGION = "us-east-1"
MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
# Timeout (s) and memory (MB) per function, as infra/functions.py declares them.
FUNCTIONS = {
    resources.GRAPH_STEP_FUNCTION: (300.0, 1024),
    resources.VALIDATE_FUNCTION: (60.0, 512),
    resources.CREDITS_POLLER_FUNCTION: (60.0, 256),
}
# A test's fault at the AWS side: (method, path) -> None to pass the real response, or (status, body).
ResponseHook = Callable[[str, str], tuple[int, bytes] | None]


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


class LambdaError(Exception):
    """A function's invocation failed; `error_type` is what Step Functions would match."""

    def __init__(self, invocation: Invocation) -> None:
        super().__init__(invocation.payload.get("errorMessage", ""))
        self.error_type = invocation.error_type
        self.invocation = invocation


@dataclass
class LocalStack:
    state_machine_arn: str
    bucket: str
    limiter_table: str
    dynamodb_endpoint: str | None
    endpoint_url: str = ""
    runtime: LambdaRuntime | None = None
    function_env: dict[str, str] = field(default_factory=dict)  # what every function's environment holds
    invocations: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[Callable[[str, Any], None]] = field(default_factory=list)  # fault injection before a call
    response_hooks: list[ResponseHook] = field(default_factory=list)  # faults in the AWS answers
    timeout_s: float | None = None  # overrides every function's timeout (None: the stack's own)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client(self, service: str) -> Any:
        import boto3

        endpoint = self.dynamodb_endpoint if service == "dynamodb" and self.dynamodb_endpoint else None
        return boto3.session.Session().client(  # type: ignore[call-overload]
            service, region_name=REGION, endpoint_url=endpoint or self.endpoint_url, **CREDENTIALS
        )

    @contextmanager
    def configured(self, setup: Callable[[], None] | None = None, **env: str) -> Iterator[None]:
        """The functions with `env` added (and `setup` run in each new worker) for a while, then as before.
        As a configuration update does on AWS, each change retires the warm workers."""
        assert self.runtime is not None
        saved = dict(self.function_env)
        self.runtime.configure(env={**saved, **env}, setup=setup)
        self.function_env.update(env)
        try:
            yield
        finally:
            self.function_env.clear()
            self.function_env.update(saved)
            self.runtime.configure(env=saved, setup=None)

    def recycle(self) -> None:
        """Retire every warm worker: the next invocations cold-start."""
        assert self.runtime is not None
        self.runtime.recycle()

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a function directly (as `aws lambda invoke` does); raises LambdaError when it fails."""
        done = self.run_function(function, event)
        if not done.ok:
            raise LambdaError(done)
        return done.payload

    def run_function(self, name: str, event: Any) -> Invocation:
        """One invocation on the function's workers, recorded in `invocations`."""
        assert self.runtime is not None
        done = self.runtime.invoke(name, event, timeout_s=self.timeout_s)
        entry: dict[str, Any] = {
            "function": name,
            "ok": done.ok,
            "elapsed_s": done.elapsed_s,
            "cold": done.cold,
            "pid": done.pid,
            "event": event,
        }
        if done.ok:
            entry["status"] = done.payload.get("status") if isinstance(done.payload, dict) else None
            entry["result"] = done.payload
        else:
            entry["error"] = done.error_class or done.error_type
            entry["error_type"] = done.error_type
            entry["message"] = str(done.payload.get("errorMessage", ""))[:300]
            entry["trace"] = "".join(done.payload.get("stackTrace") or [])
        with self._lock:
            self.invocations.append(entry)
        return done

    def cold_start(self) -> None:
        """The functions' next calls start new containers (fresh settings, clients, limiters, key rings)."""
        self.recycle()

    def dynamodb_client(self) -> Any:
        """A client of the limiter table (DynamoDB Local when it runs, else moto)."""
        return self.client("dynamodb")


def _route_invocations(stack: LocalStack) -> Any:
    """Replace moto's Lambda invoke: the stack's functions run on their workers, answered as Lambda does."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke

    def invoke(
        self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
    ) -> Any:
        name = function_name.rsplit(":", 1)[-1]
        if name not in HANDLERS:
            return original(self, function_name, qualifier, body, headers, response_headers)
        event = json.loads(body) if body else {}
        try:
            for hook in stack.hooks:
                hook(name, event)
        except Exception as exc:  # a fault before the function runs, reported as Lambda would report it
            with stack._lock:
                stack.invocations.append(
                    {"function": name, "ok": False, "error": type(exc).__name__, "message": str(exc)[:300]}
                )
            response_headers["x-amz-function-error"] = "Unhandled"
            error_type = getattr(exc, "error_type", type(exc).__name__)
            return json.dumps({"errorType": error_type, "errorMessage": str(exc)}).encode()
        done = stack.run_function(name, event)
        if not done.ok:
            response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps(done.payload, default=str).encode()

    return invoke


def _with_response_hooks(app: Any, hooks: list[ResponseHook]) -> Any:
    """Let a test replace an AWS answer after moto has handled the request (e.g. a write that landed but
    whose reply said 412)."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if not hooks:
            return app(environ, start_response)
        captured: list[Any] = []

        def keep(status: str, headers: Any, exc_info: Any = None) -> Any:
            captured[:] = [status, headers]
            return lambda data: None

        body = b"".join(app(environ, keep))
        for hook in list(hooks):
            if (fault := hook(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))) is not None:
                code, fault_body = fault
                start_response(f"{code} Fault", [("Content-Type", "application/xml")])
                return [fault_body]
        start_response(*captured)
        return [body]

    return wrapped


def _atomic_dynamodb(app: Any) -> Any:
    """One DynamoDB call at a time, as DynamoDB applies each conditional write atomically.

    moto's threaded server reads, checks and writes an item in separate steps: three concurrent
    conditional `ADD`s creating one limiter counter lost an update in 24 of 300 tries, so a day's counter
    read 3 after 4 grants and the limiter granted a 5th (the provider's 429). DynamoDB Local, the
    concurrent limiter tests' table, needs no such help."""
    lock = threading.Lock()

    def serialized(environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return app(environ, start_response)
        with lock:
            return [b"".join(app(environ, start_response))]

    return serialized


@contextmanager
def moto_server(port: int = 0) -> Iterator[tuple[str, list[ResponseHook]]]:
    """moto's backends over HTTP on loopback (fresh, and reset when done); Step Functions reaches Lambda
    and S3 through the same port, as the AWS SDK integrations do."""
    from unittest import mock

    import requests
    from moto.core.config import default_user_config
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    default_user_config.update(MOTO_CONFIG)  # type: ignore[typeddict-item]
    # werkzeug prints one access-log line per AWS call unless its logger is configured.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    hooks: list[ResponseHook] = []
    app = _with_response_hooks(_atomic_dynamodb(DomainDispatcherApplication(create_backend_app)), hooks)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="moto-server")
    thread.start()
    try:
        # moto's own config, read by its Step Functions when it calls Lambda and S3 (not the runtime's).
        with mock.patch.dict(os.environ, {"MOTO_PORT": str(server.server_port)}):
            requests.post(f"{url}/moto-api/reset", timeout=30)
            yield url, hooks
    finally:
        try:
            requests.post(f"{url}/moto-api/reset", timeout=30)
        finally:
            server.shutdown()
            thread.join(10)


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
    for name in FUNCTIONS:
        lam.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": buf.getvalue()},
        )


def function_env(
    endpoint_url: str, dynamodb_endpoint: str | None, env: dict[str, str] | None
) -> dict[str, str]:
    """A function's environment: what the CDK stack sets, the local endpoints and fake credentials."""
    return {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        resources.ENV_BUCKET: resources.DATA_BUCKET_NAME,
        resources.ENV_LIMITER_TABLE: resources.LIMITER_TABLE_NAME,
        "POWERTOOLS_SERVICE_NAME": resources.SERVICE_NAME,
        "POWERTOOLS_METRICS_NAMESPACE": resources.METRIC_NAMESPACE,
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "STEPGRAPH_ENDPOINT_URL": endpoint_url,
        **({"STEPGRAPH_DYNAMODB_ENDPOINT_URL": dynamodb_endpoint} if dynamodb_endpoint else {}),
        **(env or {}),
    }


@contextmanager
def local_stack(
    *,
    use_dynamodb_local: bool = True,
    env: dict[str, str] | None = None,
    port: int = 0,
) -> Iterator[LocalStack]:
    """Start moto on loopback, create the stack's resources and run the functions on worker processes.

    `env` is added to every function's environment (on top of what the CDK stack sets).
    """
    from unittest import mock

    from moto.awslambda_simple.models import LambdaSimpleBackend

    from stepgraph.limiter.dynamodb_local import find_jar, java_available, start_dynamodb_local
    from stepgraph.limiter.table import ensure_limiter_table

    with ExitStack() as stack:
        ddb_endpoint = None
        if use_dynamodb_local and java_available() and find_jar():
            ddb_endpoint = stack.enter_context(start_dynamodb_local())
        elif use_dynamodb_local:
            log.warning("Java or DynamoDB Local missing: the limiter table runs in moto (run `make setup`)")
        url, response_hooks = stack.enter_context(moto_server(port))
        stack.enter_context(prefix_index())  # moto scans the whole bucket per prefix listing otherwise
        fenv = function_env(url, ddb_endpoint, env)
        runtime = LambdaRuntime(
            [
                FunctionConfig(name, HANDLERS[name], dict(fenv), timeout_s=t, memory_mb=m)
                for name, (t, m) in FUNCTIONS.items()
            ]
        )
        stack.callback(runtime.close)
        st = LocalStack(
            "",
            resources.DATA_BUCKET_NAME,
            resources.LIMITER_TABLE_NAME,
            ddb_endpoint,
            endpoint_url=url,
            runtime=runtime,
            function_env=fenv,
            response_hooks=response_hooks,
        )
        stack.enter_context(mock.patch.object(LambdaSimpleBackend, "invoke", _route_invocations(st)))
        st.client("s3").create_bucket(Bucket=resources.DATA_BUCKET_NAME)
        ensure_limiter_table(st.client("dynamodb"), resources.LIMITER_TABLE_NAME)
        _create_functions(st.client("lambda"), st.client("iam"))
        st.state_machine_arn = st.client("stepfunctions").create_state_machine(
            name=resources.STATE_MACHINE_NAME,
            definition=json.dumps(local_definition()),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/stepgraph-local",
        )["stateMachineArn"]
        yield st
