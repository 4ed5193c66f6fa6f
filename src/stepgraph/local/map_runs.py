"""Child executions of a Distributed Map on moto, listed and described as AWS does.

moto's Step Functions interpreter runs each Distributed Map item inside the parent's interpreter and
keeps no child execution, so `list_executions(mapRunArn=...)` fails with a 500 and per-item state
cannot be read locally. `install()` records each item's run as a child execution (ARN, input after the
ItemSelector, status, output) and answers `list_executions(mapRunArn=...)` and `describe_execution` for
those ARNs; every other call goes to moto untouched. It also keeps the interpreter's own error lines
(a 1,500-character repr of a state) off the user's terminal.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

_lock = threading.Lock()
_current = threading.local()
_by_map_run: dict[str, list[Child]] = {}
_by_arn: dict[str, Child] = {}
_installed: list[bool] = []


@dataclass
class Child:
    execution_arn: str
    map_run_arn: str
    state_machine_arn: str
    input: Any
    status: str = "RUNNING"
    output: Any = None
    start_date: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))
    stop_date: datetime.datetime | None = None

    @property
    def name(self) -> str:
        return self.execution_arn.rsplit(":", 1)[-1]

    def list_item(self) -> dict[str, Any]:
        item = {
            "executionArn": self.execution_arn,
            "stateMachineArn": self.state_machine_arn,
            "name": self.name,
            "status": self.status,
            "startDate": self.start_date,
            "mapRunArn": self.map_run_arn,
        }
        if self.stop_date:
            item["stopDate"] = self.stop_date
        return item

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in self.list_item().items() if k != "mapRunArn"}
        out["mapRunArn"] = self.map_run_arn
        out["input"] = json.dumps(self.input)
        if self.status == "SUCCEEDED":
            out["output"] = json.dumps(self.output)
        return out


def children(map_run_arn: str) -> list[Child]:
    with _lock:
        return list(_by_map_run.get(map_run_arn, []))


def quiet_interpreter() -> None:
    """The interpreter logs every failed state as ERROR with its full repr: not for a user's terminal."""
    interp = logging.getLogger("moto.stepfunctions.parser")
    interp.setLevel(logging.CRITICAL)
    interp.propagate = False


def install() -> None:
    """Patch moto once per process (idempotent)."""
    quiet_interpreter()
    with _lock:
        if _installed:
            return
        _installed.append(True)
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker_mod,
    )
    from moto.stepfunctions.responses import StepFunctionResponse

    worker = worker_mod.DistributedItemProcessorWorker
    eval_job, eval_input = worker._eval_job, worker._eval_input

    def _eval_job(self: Any, env: Any, job: Any) -> None:
        record = self._map_run_record
        arn = record.map_state_machine_arn.replace(":stateMachine:", ":execution:", 1)
        child = Child(
            f"{arn}:{uuid.uuid4()}", record.map_run_arn, record.map_state_machine_arn, job.job_input
        )
        with _lock:
            _by_map_run.setdefault(child.map_run_arn, []).append(child)
            _by_arn[child.execution_arn] = child
        _current.child = child
        try:
            eval_job(self, env, job)
        finally:
            _current.child = None
            child.output = job.job_output
            child.status = "SUCCEEDED" if job.job_output is not None else "FAILED"
            child.stop_date = datetime.datetime.now(datetime.UTC)

    def _eval_input(self: Any, env_frame: Any) -> None:
        eval_input(self, env_frame)
        child = getattr(_current, "child", None)
        if child is not None:  # the item as the ItemSelector made it: a child execution's input
            child.input = env_frame.states.get_input()

    worker._eval_job = _eval_job  # type: ignore[method-assign]
    worker._eval_input = _eval_input  # type: ignore[method-assign]

    list_executions, describe_execution = (
        StepFunctionResponse.list_executions,
        StepFunctionResponse.describe_execution,
    )

    def list_executions_patched(self: Any) -> Any:
        map_run_arn = self._get_param("mapRunArn")
        if not map_run_arn:
            return list_executions(self)
        wanted = self._get_param("statusFilter")
        rows = [c for c in children(map_run_arn) if not wanted or c.status == wanted]
        start = int(self._get_param("nextToken") or 0)
        size = self._get_int_param("maxResults") or 100
        page: dict[str, Any] = {"executions": [c.list_item() for c in rows[start : start + size]]}
        if start + size < len(rows):
            page["nextToken"] = str(start + size)
        return ActionResult(page)

    def describe_execution_patched(self: Any) -> Any:
        with _lock:
            child = _by_arn.get(self._get_param("executionArn"))
        return ActionResult(child.describe()) if child else describe_execution(self)

    StepFunctionResponse.list_executions = list_executions_patched  # type: ignore[method-assign]
    StepFunctionResponse.describe_execution = describe_execution_patched  # type: ignore[method-assign]
