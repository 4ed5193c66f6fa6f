"""Load the deployed handler files (lambdas/<name>/handler.py) and call them in this process: a local
stack's worker processes do (see `stepgraph.local.workers`), and so do tests of one handler."""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stepgraph import resources

HANDLERS = {
    resources.VALIDATE_FUNCTION: "validate_input",
    resources.GRAPH_STEP_FUNCTION: "graph_step",
    resources.CREDITS_POLLER_FUNCTION: "credits_poller",
}
_loaded: dict[str, Any] = {}  # directory -> the handler module (one warm container per function)
# The Map's first concurrent calls would each load the handler and build its own container (40 of them
# at once for 40 items in flight); one loads, the others wait for it.
_loading = threading.RLock()


def _module(directory: str) -> Any:
    with _loading:
        if directory not in _loaded:
            path = resources.data_path("lambdas", directory, "handler.py")
            spec = importlib.util.spec_from_file_location(f"stepgraph_lambda_{directory}", path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _loaded[directory] = module
        return _loaded[directory]


def load_handler(directory: str) -> Callable[..., Any]:
    handler: Callable[..., Any] = _module(directory).handler
    return handler


def dependencies(function_name: str) -> Any:
    """The warm container's dependencies of a function (its clients, limiters, key rings), for tests
    that watch or fault what the handler uses."""
    import os

    return _module(HANDLERS[function_name]).container.get(os.environ)


def cold_start() -> None:
    """Every function's next call starts a new container: its handler module (and so its settings,
    clients, limiters and key rings) is loaded afresh."""
    _loaded.clear()


@dataclass
class FakeLambdaContext:
    """What Powertools and the handlers read from a Lambda context."""

    function_name: str = resources.GRAPH_STEP_FUNCTION
    timeout_s: float = 900.0
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def invoke(function_name: str, event: Any, *, timeout_s: float = 900.0) -> Any:
    return load_handler(HANDLERS[function_name])(event, FakeLambdaContext(function_name, timeout_s))
