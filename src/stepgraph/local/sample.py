"""`stepgraph plan`'s measurement: a few items of the batch through the local stack and the simulator, with
limits out of the way, to learn what the graph asks for per item (calls, tokens, graph-step calls, checkpoint
objects) and how long one item takes on its own. The forecast then applies the real limits.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepgraph import resources
from stepgraph.local.simulator import DEV_KEY, running_simulator
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.usage import layout

FREE_MODEL = "openrouter:openai/gpt-oss-120b:free"
STEP_STATE = "Step"  # the item processor's graph-step Task (statemachine/graph_fanout.asl.json)


@dataclass
class Sample:
    """Per-item means of a sample run (`items` of them, `wall_s` from start to end)."""

    items: int
    wall_s: float
    calls_per_item: float
    prompt_tokens_per_call: float
    completion_tokens_per_call: float
    item_s: float  # first call to last reply of one item, on average
    calls_span_s: float  # first call to last reply of the whole sample
    start_s: float  # the execution's start to its first call
    steps_per_item: float  # graph-step calls
    step_s: float  # one graph-step call's duration
    checkpoint_puts_per_item: float
    usage_puts_per_step: float
    failed_items: int = 0
    step_to_call_s: float | None = None  # the Step state's entry to its first call (None: no history)

    @property
    def resume_s(self) -> float:
        """A throttled item's wake-up after its Wait, to its first call: the Step state's entry, the graph-step
        invocation's start (Lambda, checkpoint read, the limiter) and the call. The sample sees the same path
        in the Step state that made its first call: not in the execution's start to its first call, which
        also holds the run's start-up (the definition's parse, validate-input, the Map) and any wait of its
        own (a short Wait when the sample's parallel calls met each other in the limiter)."""
        return self.start_s if self.step_to_call_s is None else self.step_to_call_s

    @property
    def end_s(self) -> float:
        """The last reply to the execution's end (results, the Map's own states)."""
        return max(0.0, self.wall_s - self.start_s - self.calls_span_s)


def _ts(record: dict[str, Any]) -> float:
    """When the call was sent (a usage record's `ts` is its start)."""
    return datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00")).timestamp()


def _end(record: dict[str, Any]) -> float:
    """When its reply came back: the start plus the call's latency."""
    return _ts(record) + (record.get("latency_ms") or 0) / 1000


def call_times(records: list[dict[str, Any]]) -> tuple[float, float, float]:
    """(one item's first call to its last reply, on average; the first call's start; the first call to the
    last reply of them all) from usage records."""
    if not records:
        return 0.0, 0.0, 0.0
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_item[str(r.get("item_id"))].append(r)
    spans = [max(map(_end, rs)) - min(map(_ts, rs)) for rs in by_item.values()]
    first = min(map(_ts, records))
    return sum(spans) / len(spans), first, max(map(_end, records)) - first


def measure_run(st: LocalStack, arn: str, wall_s: float, items: int) -> Sample:
    """The sample's figures from what the run left: usage records, invocations, objects in the bucket."""
    name = resources.execution_name(arn)
    s3 = st.client("s3")
    records = list(layout.s3_records(s3, st.bucket, execution=name))
    ok = [r for r in records if r.get("status") == "ok"] or records
    item_s, first_call, calls_span = call_times(records)
    started = st.client("stepfunctions").describe_execution(executionArn=arn)["startDate"].timestamp()
    steps = [
        i
        for i in st.invocations
        if i["function"] == resources.GRAPH_STEP_FUNCTION
        and isinstance(i.get("event"), dict)
        and str(i["event"].get("execution_id", "")).endswith(f":{name}")
        and not i["event"].get("park")
    ]
    checkpoints = _count(s3, st.bucket, f"{resources.PREFIX_CHECKPOINTS}{name}/")
    usage_objects = len(layout.s3_keys(s3, st.bucket, execution=name))
    done = _count(s3, st.bucket, f"{resources.PREFIX_RESULTS}{name}/")
    n = max(items, 1)
    return Sample(
        items=items,
        wall_s=round(wall_s, 3),
        calls_per_item=len(records) / n,
        prompt_tokens_per_call=sum(r.get("prompt_tokens") or 0 for r in ok) / max(len(ok), 1),
        completion_tokens_per_call=sum(r.get("completion_tokens") or 0 for r in ok) / max(len(ok), 1),
        item_s=item_s,
        calls_span_s=calls_span,
        start_s=max(0.0, first_call - started) if records else 0.0,
        steps_per_item=len(steps) / n,
        step_s=sum(s["elapsed_s"] for s in steps) / max(len(steps), 1),
        checkpoint_puts_per_item=checkpoints / n,
        usage_puts_per_step=usage_objects / max(len(steps), 1),
        failed_items=items - done,
        step_to_call_s=step_to_first_call(st.client("stepfunctions"), arn, first_call) if records else None,
    )


def step_to_first_call(sfn: Any, arn: str, first_call: float) -> float | None:
    """The first call's time after the entry of the Step state that made it (the latest entry before it)."""
    entries = [
        e["timestamp"].timestamp()
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
        for e in page["events"]
        if e["type"] == "TaskStateEntered" and e.get("stateEnteredEventDetails", {}).get("name") == STEP_STATE
    ]
    before = [t for t in entries if t <= first_call]
    return first_call - max(before) if before else None


def _count(s3: Any, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def run_batch(
    st: LocalStack, graph: str, items: list[Any], config: dict[str, Any], *, timeout_s: float = 600
) -> tuple[str, float]:
    """Start one execution on the stack, wait for its end; returns (ARN, wall seconds). The wall time is
    the execution's own, its start to its stop as Step Functions records them: the client's calls and the
    polling are not the run's."""
    from stepgraph.errors import ConfigError

    sfn = st.client("stepfunctions")
    payload = {"graph": graph, "items": items, "config": config}
    started = time.monotonic()
    arn = sfn.start_execution(
        stateMachineArn=st.state_machine_arn, name=f"plan-{uuid.uuid4().hex[:10]}", input=json.dumps(payload)
    )["executionArn"]
    while (desc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        if time.monotonic() - started > timeout_s:
            raise ConfigError(
                f"the sample run did not end within {timeout_s:g} s", hint="try a smaller --sample"
            )
        time.sleep(0.1)
    if desc["status"] != "SUCCEEDED":
        raise ConfigError(
            f"the sample run ended {desc['status']}: {desc.get('error')}: {str(desc.get('cause'))[:200]}",
            hint="check the graph and --config with `stepgraph demo --graph ...`",
        )
    return str(arn), (desc["stopDate"] - desc["startDate"]).total_seconds()


def sample_on(st: LocalStack, graph: str, items: list[Any], config: dict[str, Any]) -> Sample:
    """Run the sample on `st` three times and measure the faster of the last two: the first starts the
    functions' workers, as a batch's first minutes do on AWS, and the forecast is of a batch's steady pace."""
    run_batch(st, graph, items, config)
    runs = [run_batch(st, graph, items, config) for _ in range(2)]
    arn, wall = min(runs, key=lambda r: r[1])  # the faster of two: the machine's other work is noise
    return measure_run(st, arn, wall, len(items))


def measure_sample(
    graph: str,
    items: list[Any],
    config: dict[str, Any],
    *,
    time_scale: float = 0.05,
    env: dict[str, str] | None = None,
) -> Sample:
    """Run `items` (the sample) on a fresh local stack against the simulator with limits out of the way."""
    sim_opts: dict[str, Any] = {"rpm": 100_000, "rpd": 10_000_000, "time_scale": time_scale}
    with running_simulator(**sim_opts) as sim:
        stack_env = {
            "STEPGRAPH_TIME_SCALE": str(time_scale),
            "STEPGRAPH_STEP_MARGIN_S": "1",
            "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
            "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
            "OPENROUTER_API_KEY": f"plan={DEV_KEY}",
            "OLLAMA_API_KEY": f"plan={DEV_KEY}",
            "STEPGRAPH_LIMITS_OVERRIDES": json.dumps(
                {"rpm": {"capacity": 100_000}, "rpd": {"capacity": 10_000_000}}
            ),
            **(env or {}),
        }
        run_config = {**config, "models": [FREE_MODEL], "max_concurrency": max(len(items), 1)}
        # The limiter table in moto: a sample meets no contention, and Java's start-up is saved.
        with local_stack(env=stack_env, use_dynamodb_local=False) as st:
            return sample_on(st, graph, items, run_config)
