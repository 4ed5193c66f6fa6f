"""Lambda's execution model on one machine: each function runs in its own worker processes.

A worker is a container: it starts with the function's environment (and nothing of the caller's), imports
the handler once (the cold start), then serves one invocation at a time until it is recycled. The pool keeps
idle workers warm and starts a new one when every warm one is busy, up to the function's concurrency. An
invocation that overruns the function's timeout kills its worker (`Sandbox.Timedout`); a worker that dies
mid-invocation is reported as Lambda reports a runtime exit (`Runtime.ExitError`); a handler's exception comes
back as Lambda's `errorType`/`errorMessage`/`stackTrace`. Workers are forked from a forkserver that has the
heavy libraries imported already, so a cold start costs a fork and the handler module, not a fresh
interpreter (and no thread of the caller is forked).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)
# Imported once in the forkserver, so each worker forks with them in memory (see module docstring).
PRELOAD = [
    "stepgraph.local.workers",
    "stepgraph.local.lambdas",
    "boto3",
    "botocore.session",
    "pydantic",
    "httpx",
    "aws_lambda_powertools",
    "langgraph.graph",
    "langchain_openai",
]
# What a worker keeps of the caller's environment: enough to find Python and its packages, no credentials.
PASS_THROUGH = ("PATH", "PYTHONPATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "VIRTUAL_ENV", "TZ")
INIT_TIMEOUT_S = 60.0  # Lambda allows 10 s of init; a loaded 2-core machine needs more


@dataclass
class FunctionConfig:
    """One function as the CDK stack declares it: its handler file, environment, timeout and concurrency."""

    name: str
    directory: str  # lambdas/<directory>/handler.py
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 900.0
    memory_mb: int = 1024
    concurrency: int = 64  # at most this many invocations at once; more wait for a worker
    setup: Callable[[], None] | None = None  # runs in each new worker before the handler loads (fault tests)


@dataclass
class Invocation:
    """What Lambda's Invoke answers: the payload, and the error type when the function failed."""

    payload: Any
    error_type: str | None = None  # errorType, as Step Functions matches it
    error_class: str | None = None  # the exception's class, when the handler raised
    cold: bool = False
    elapsed_s: float = 0.0
    pid: int = 0

    @property
    def ok(self) -> bool:
        return self.error_type is None


def _error(error_type: str, message: str, trace: list[str] | None = None) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message, "stackTrace": trace or []}


class _LogForwarder(logging.Handler):
    """Send a worker's log records to the caller, which hands them to its own loggers."""

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        super().__init__()
        self.conn, self.send_lock = conn, lock  # not `self.lock`: that is the Handler's own

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            with self.send_lock:
                self.conn.send(("log", record))
        except Exception:  # a record that cannot travel is dropped, as a full log buffer would drop it
            pass


def _log_level(env: dict[str, str]) -> int:
    names = [env.get("STEPGRAPH_LOG_LEVEL", ""), env.get("POWERTOOLS_LOG_LEVEL", ""), "WARNING"]
    return min(
        logging.getLevelName(n.upper()) for n in names if isinstance(logging.getLevelName(n.upper()), int)
    )


def _worker_main(
    conn: Connection,
    out: Connection,
    err: Connection,
    config: FunctionConfig,
    env: dict[str, str],
) -> None:
    """The container: the function's environment, its handler loaded once, then one invocation at a time."""
    from stepgraph.local.lambdas import FakeLambdaContext, load_handler

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is for the caller to handle
    for stream, pipe in ((sys.stdout, out), (sys.stderr, err)):
        stream.flush()
        os.dup2(pipe.fileno(), stream.fileno())  # like Lambda's log capture: stdout/stderr go to the caller
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints where a stuck worker is
    os.environ.clear()
    os.environ.update(env)
    lock = threading.Lock()
    root = logging.getLogger()
    root.handlers[:] = [_LogForwarder(conn, lock)]
    root.setLevel(_log_level(env))
    try:
        if config.setup is not None:
            config.setup()
        handler = load_handler(config.directory)
    except BaseException as exc:  # Lambda's init error: reported on every invocation until recycled
        with lock:
            conn.send(("init", _error("Runtime.ImportModuleError", f"{type(exc).__name__}: {exc}")))
        return
    with lock:
        conn.send(("init", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        request_id, event, timeout_s, begun = message
        # The deadline is the caller's (CLOCK_MONOTONIC is one clock for every process of the machine):
        # time the message spent in the pipe is already spent, as Lambda's deadline counts from the invoke.
        context = FakeLambdaContext(
            config.name, timeout_s, config.memory_mb, aws_request_id=request_id, started=begun
        )
        try:
            result: tuple[Any, ...] = ("ok", json.dumps(handler(json.loads(event), context), default=str))
        except Exception as exc:  # reported the way Lambda reports an unhandled error
            # Faults may pose as Lambda service errors (`error_type`), which the ASL retries.
            error_type = getattr(exc, "error_type", type(exc).__name__)
            payload = _error(error_type, str(exc), traceback.format_exception(exc))
            result = ("error", payload, type(exc).__name__)
        sys.stdout.flush()
        sys.stderr.flush()
        with lock:
            conn.send(result)


def _copy(pipe: Connection, target: Callable[[], Any]) -> None:
    """Copy a worker's stdout or stderr to the caller's, as lines arrive."""
    fd = pipe.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        stream = target()
        try:
            stream.write(chunk.decode(errors="replace"))
            stream.flush()
        except Exception:  # the caller's stream is gone (interpreter exit)
            return


class _Worker:
    def __init__(self, ctx: Any, config: FunctionConfig, generation: int) -> None:
        env = {k: v for k in PASS_THROUGH if (v := os.environ.get(k)) is not None}
        env.update(
            AWS_LAMBDA_FUNCTION_NAME=config.name,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(config.memory_mb),
            AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
            LAMBDA_TASK_ROOT=os.getcwd(),
        )
        env.update(config.env)
        self.generation = generation
        self.conn, child = ctx.Pipe()
        out_r, out_w = ctx.Pipe(duplex=False)
        err_r, err_w = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_worker_main, args=(child, out_w, err_w, config, env), daemon=True, name=config.name
        )
        _start(self.process)
        for end in (child, out_w, err_w):
            end.close()
        self.copiers = [
            threading.Thread(target=_copy, args=(out_r, lambda: sys.stdout), daemon=True),
            threading.Thread(target=_copy, args=(err_r, lambda: sys.stderr), daemon=True),
        ]
        for t in self.copiers:
            t.start()
        self._pipes = (out_r, err_r)
        self.init_error: dict[str, Any] | None = None
        self.initialised = False

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def receive(self, deadline: float) -> Any:
        """The worker's next answer before `deadline`, handing its log records on; None when out of time;
        EOFError when the worker died."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.conn.poll(left):
                return None
            message = self.conn.recv()
            if message[0] == "log":
                record = message[1]
                logging.getLogger(record.name).handle(record)
                continue
            return message

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.pid, signal.SIGKILL)
        self.close()

    def close(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout_s)
        for t in self.copiers:
            t.join(timeout_s)
        for end in (self.conn, *self._pipes):
            end.close()


_start_lock = threading.Lock()


def _start(process: Any) -> None:
    """Start a worker without the caller's `__main__`: multiprocessing would import it again in the child
    (running a script without a main guard twice); a function needs its handler file, not the caller."""
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def without_main(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    with _start_lock:
        spawn.get_preparation_data = without_main  # type: ignore[assignment]
        try:
            process.start()
        finally:
            spawn.get_preparation_data = original


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class FunctionPool:
    """The warm workers of one function, started on demand, at most `config.concurrency` at once."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self._ctx = _context()
        self._idle: list[_Worker] = []
        self._busy: dict[int, _Worker] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._generation = 0
        self.cold_starts = 0

    def configure(self, **changes: Any) -> None:
        """Change the function's configuration; as on AWS, later invocations run on new workers."""
        with self._lock:
            env = changes.pop("env", None)
            for name, value in changes.items():
                setattr(self.config, name, value)
            if env is not None:
                self.config.env = dict(env)
            self._generation += 1
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()

    def recycle(self) -> None:
        """Retire every warm worker: the next invocations cold-start."""
        self.configure()

    def busy_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._busy.values()]

    def _take(self) -> tuple[_Worker, bool]:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker, False
                worker.close()
            generation = self._generation
        self.cold_starts += 1
        return _Worker(self._ctx, self.config, generation), True

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if worker.generation == self._generation and worker.process.is_alive():
                self._idle.append(worker)
                return
        worker.close()

    def invoke(self, event: Any, *, timeout_s: float | None = None) -> Invocation:
        timeout = self.config.timeout_s if timeout_s is None else timeout_s
        request_id = uuid.uuid4().hex
        with self._slots:
            worker, cold = self._take()
            with self._lock:
                self._busy[id(worker)] = worker
            try:
                return self._run(worker, cold, request_id, json.dumps(event), timeout)
            finally:
                with self._lock:
                    self._busy.pop(id(worker), None)

    def _run(self, worker: _Worker, cold: bool, request_id: str, event: str, timeout: float) -> Invocation:
        started = time.monotonic()
        try:
            if not worker.initialised:
                init = worker.receive(started + INIT_TIMEOUT_S)
                if init is None:
                    worker.kill()
                    return Invocation(_error("Runtime.InitError", "init did not finish"), "Runtime.InitError")
                worker.initialised, worker.init_error = True, init[1]
            if worker.init_error:
                worker.close()
                return Invocation(
                    worker.init_error, worker.init_error["errorType"], cold=cold, pid=worker.pid
                )
            begun = time.monotonic()  # Lambda's timeout counts from the invocation, not the init
            worker.conn.send((request_id, event, timeout, begun))
            answer = worker.receive(begun + timeout)
        except (EOFError, OSError, BrokenPipeError):
            answer = "died"
        elapsed = time.monotonic() - started
        if answer is None:
            worker.kill()  # as Lambda stops an overrunning function
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            return Invocation(_error("Sandbox.Timedout", message), "Sandbox.Timedout", None, cold, elapsed)
        if answer == "died":
            pid, code = worker.pid, worker.process.exitcode
            worker.close()
            code = worker.process.exitcode if code is None else code
            # Lambda words it as Go's os/exec does: "signal: killed", "exit status 1".
            if code is not None and code < 0:
                how = f"signal: {(signal.strsignal(-code) or str(-code)).lower()}"
            else:
                how = f"exit status {code}"
            message = f"RequestId: {request_id} Error: Runtime exited with error: {how}"
            return Invocation(
                _error("Runtime.ExitError", message), "Runtime.ExitError", None, cold, elapsed, pid
            )
        self._give_back(worker)
        if answer[0] == "ok":
            return Invocation(json.loads(answer[1]), None, None, cold, elapsed, worker.pid)
        return Invocation(answer[1], answer[1]["errorType"], answer[2], cold, elapsed, worker.pid)

    def close(self) -> None:
        with self._lock:
            workers, self._idle = [*self._idle, *self._busy.values()], []
            self._busy.clear()
        for worker in workers:
            worker.close()


class LambdaRuntime:
    """Every function of the stack, each with its own pool of workers."""

    def __init__(self, functions: list[FunctionConfig]) -> None:
        self.pools = {f.name: FunctionPool(f) for f in functions}

    def invoke(self, name: str, event: Any, *, timeout_s: float | None = None) -> Invocation:
        return self.pools[name].invoke(event, timeout_s=timeout_s)

    def configure(self, **changes: Any) -> None:
        for pool in self.pools.values():
            pool.configure(**dict(changes))

    def recycle(self) -> None:
        for pool in self.pools.values():
            pool.recycle()

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
