"""Bad input to the graph-step handler, row by row (malformed events, bad STEPGRAPH_* values, the provider
table and the graph registry, a corrupt thread): each gets one typed error saying what, where and what to do;
nothing is written, no provider is called, and the next good event runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stepgraph import resources
from stepgraph.checkpoint import CorruptCheckpoint, S3Saver
from stepgraph.errors import ConfigError, InvalidInput, StepGraphError, UnknownGraph
from stepgraph.limiter.table import ensure_limiter_table
from stepgraph.local.asl import definition_path
from stepgraph.local.lambdas import cold_start, invoke
from stepgraph.local.simulator import DEV_KEY, running_simulator
from tests.fixtures.bad_input import BUCKET, DROP, assert_clear, build_echo_graph, drop, objects

EXEC = "arn:aws:states:us-east-1:123456789012:execution:stepgraph-graph-fanout:run-1"
STEP = resources.GRAPH_STEP_FUNCTION
ECHO = f"{build_echo_graph.__module__}:build_echo_graph"
GRAPHS = json.dumps({"echo": ECHO})
GOOD = {"execution_id": EXEC, "item_id": "ok", "item": {"text": "x"}, "graph": "echo", "config": {}}


def not_a_graph() -> int:
    return 42


def compiled_graph() -> Any:
    return build_echo_graph().compile()


def event(**changes: Any) -> dict[str, Any]:
    return drop({**GOOD, **changes})


def ref(key: str) -> dict[str, str]:
    return {"bucket": BUCKET, "key": key}


EVENT_ROWS = [
    ("no item", event(item=DROP), InvalidInput, r"^event\.\(root\): .*give 'item' or 'item_ref'$"),
    ("item and item_ref", event(item_ref=ref("items/x.json")), InvalidInput, r"'item_ref', not both"),
    ("item_ref gone", event(item=DROP, item_ref=ref("items/gone.json")), InvalidInput, r"^event\.item_ref: s3://stepgraph-data/items/gone\.json cannot be read \(NoSuchKey\) \(point"),
    ("item_ref not JSON", event(item=DROP, item_ref=ref("items/not-json.json")), InvalidInput, r"^event\.item_ref: s3://stepgraph-data/items/not-json\.json is not JSON"),
    ("item_ref bucket", event(item=DROP, item_ref={"bucket": "b", "key": "k"}), InvalidInput, r"^event\.item_ref\.bucket: String should have at least 3"),
    ("graph nope", event(graph="nope"), UnknownGraph, r"^event\.graph: unknown graph 'nope' \(registered: document_pipeline, echo, fanout, support_agent, triage_with_review\)$"),
    ("graph os:path", event(graph="os:path"), UnknownGraph, r"^event\.graph: unknown graph 'os:path'"),
    ("graph empty", event(graph=""), InvalidInput, r"^event\.graph: String should have at least 1"),
    ("no item_id", event(item_id=DROP), InvalidInput, r"^event\.item_id: Field required$"),
    ("not an object", ["graph", "echo"], InvalidInput, r"^event\.\(root\): Input should be a valid dict"),
    ("max_concurrency abc", event(config={"max_concurrency": "abc"}), InvalidInput, r"^event\.config\.max_concurrency: Input should be a valid integer"),
    ("max_rounds 0", event(config={"max_rounds": 0}), InvalidInput, r"^event\.config\.max_rounds: Input should be greater than or equal to 1$"),
    ("unknown config key", event(config={"colour": "red"}), InvalidInput, r"^event\.config\.colour: Extra inputs are not permitted$"),
    ("models not a list", event(config={"models": "m"}), InvalidInput, r"^event\.config\.models: Input should be a valid list \(the chain\) or an object of role -> list$"),
    ("unknown model", event(config={"models": ["openrouter:nope"]}), InvalidInput, r"^event\.config\.models\[0\]: model 'nope' is not in provider 'openrouter' \(known: "),
    ("unknown profile", event(config={"limits_profile": "gold"}), InvalidInput, r"^event\.config\.limits_profile: unknown limit profile 'gold' \(known profiles: "),
]  # fmt: skip


# -- bad STEPGRAPH_* values, the provider table and the graph registry -------------------------
def table(**changes: Any) -> str:
    spec: dict[str, Any] = {"base_url": "http://127.0.0.1:9/v1", "models": {"m": {"free": True}}}
    data: dict[str, Any] = {"providers": {"sim": spec}, "chain": ["sim:m"]}
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = value
    return json.dumps(data)


def graphs(target: str) -> str:
    return json.dumps({"echo": ECHO, "g": target})


P, G = "STEPGRAPH_PROVIDERS", "STEPGRAPH_GRAPHS"

ENV_ROWS = [
    ("providers not JSON", P, "{providers:", "echo", r"^STEPGRAPH_PROVIDERS is neither JSON nor a file"),
    ("providers a list", P, "[]", "echo", r"^STEPGRAPH_PROVIDERS must be a mapping with 'providers'"),
    ("providers: list", P, '{"providers": [], "chain": []}', "echo", r"^STEPGRAPH_PROVIDERS must be a mapping"),
    ("unknown top key", P, table(fallback=["sim:m"]), "echo", r"^STEPGRAPH_PROVIDERS: fallback: Extra inputs"),
    ("unknown provider key", P, table(providers__sim__limit_profile="x"), "echo", r"^STEPGRAPH_PROVIDERS: providers\.sim\.limit_profile: Extra inputs are not permitted$"),
    ("unknown model key", P, table(providers__sim__models__m__price=1), "echo", r"^STEPGRAPH_PROVIDERS: providers\.sim\.models\.m\.price: Extra inputs are not permitted$"),
    ("empty chain", P, table(chain=[]), "echo", r"^STEPGRAPH_PROVIDERS: chain: List should have at least 1"),
    ("chain model missing", P, table(chain=["sim:m", "sim:other"]), "echo", r"^STEPGRAPH_PROVIDERS: chain\.1: model 'other' is not in provider 'sim' \(known: \['m'\]\)$"),
    ("providers bad YAML file", P, "{tmp}/providers.yaml", "echo", r"^STEPGRAPH_PROVIDERS: cannot read .*providers\.yaml \(expected .*, line 3\)$"),
    ("time scale word", "STEPGRAPH_TIME_SCALE", "fast", "echo", r"^STEPGRAPH_TIME_SCALE: Input should be a valid number.*\(got 'fast'\) \(fix the variable"),
    ("time scale > 1", "STEPGRAPH_TIME_SCALE", "2", "echo", r"^STEPGRAPH_TIME_SCALE: .*less than or equal to 1"),
    ("log level", "STEPGRAPH_LOG_LEVEL", "LOUD", "echo", r"^STEPGRAPH_LOG_LEVEL: Input should be 'DEBUG'"),
    ("margin < 0", "STEPGRAPH_STEP_MARGIN_S", "-1", "echo", r"^STEPGRAPH_STEP_MARGIN_S: .*greater than or"),
    ("gzip maybe", "STEPGRAPH_USAGE_GZIP", "maybe", "echo", r"^STEPGRAPH_USAGE_GZIP: .*valid boolean"),
    ("budget word", "STEPGRAPH_DAILY_BUDGET_USD", "ten", "echo", r"^STEPGRAPH_DAILY_BUDGET_USD: .*number"),
    ("overrides not JSON", "STEPGRAPH_LIMITS_OVERRIDES", "{rpm: 10}", "echo", r"^STEPGRAPH_LIMITS_OVERRIDES: Value error, not JSON"),
    ("overrides shape", "STEPGRAPH_LIMITS_OVERRIDES", '{"rpm": 10}', "echo", r"^STEPGRAPH_LIMITS_OVERRIDES: Value error, must map limit names to fields"),
    ("graphs not JSON", G, "{echo:", "echo", r"^STEPGRAPH_GRAPHS is not JSON"),
    ("graphs a list", G, '["echo"]', "echo", r"^STEPGRAPH_GRAPHS must be a JSON object, not list"),
    ("graph nope", G, graphs("nope"), "g", r"^STEPGRAPH_GRAPHS entries \['g'\] must be 'module:function'$"),
    ("graph os:path", G, graphs("os:path"), "g", r"^graph 'g': os:path is a module, not a function \(check STEPGRAPH_GRAPHS\)$"),
    ("graph missing fn", G, graphs("json:missing_fn"), "g", r"^graph 'g': cannot load json:missing_fn \(.*missing_fn.*\) \(check STEPGRAPH_GRAPHS\)$"),
    ("graph missing module", G, graphs("no_such_mod_xyz:build"), "g", r"^graph 'g': cannot load no_such_mod_xyz:build \(No module named 'no_such_mod_xyz'\)"),
    ("graph returns int", G, graphs(f"{__name__}:not_a_graph"), "g", r"^graph 'g': .*:not_a_graph returned int, not an uncompiled StateGraph \(return the"),
    ("graph returns compiled", G, graphs(f"{__name__}:compiled_graph"), "g", r"returned CompiledStateGraph, not an uncompiled StateGraph"),
]  # fmt: skip

# -- the graph-step handler: malformed events, bad settings, a corrupt thread ---------------------
ROWS = [pytest.param({}, ev, err, m, id=i) for i, ev, err, m in EVENT_ROWS] + [
    pytest.param({var: value}, event(graph=graph), ConfigError, m, id=i)
    for i, var, value, graph, m in ENV_ROWS
]


@pytest.fixture(scope="class")
def shared_stack() -> Iterator[dict[str, Any]]:
    """One moto account and one simulator for the handler rows: a warm container across rows."""
    with running_simulator(rpm=20, rpd=1000, time_scale=0.05) as sim, pytest.MonkeyPatch.context() as mp:
        env = {
            "STEPGRAPH_BUCKET": BUCKET, "STEPGRAPH_LIMITER_TABLE": "stepgraph-limiter", "STEPGRAPH_GRAPHS": GRAPHS,
            "STEPGRAPH_TIME_SCALE": "0.05", "STEPGRAPH_STEP_MARGIN_S": "1",
            "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url, "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
            "OPENROUTER_API_KEY": f"dev={DEV_KEY}", "OLLAMA_API_KEY": f"dev={DEV_KEY}",
            "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
        }  # fmt: skip
        for k, v in env.items():
            mp.setenv(k, v)
        cold_start()  # a new AWS account (moto) gets new function containers
        with mock_aws():
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key="items/not-json.json", Body=b"{'text': 'single quotes'}")
            ensure_limiter_table(boto3.client("dynamodb", region_name="us-east-1"), "stepgraph-limiter")
            yield {"s3": s3, "sim": sim}


@pytest.fixture
def stack(shared_stack: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield shared_stack  # a row's environment change reaches the handlers' next call by itself


def step_states(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("Resource") == "${GraphStepFunctionArn}":
            yield node
        for v in node.values():
            yield from step_states(v)


class TestGraphStep:
    """In-process handler calls against moto and the simulator."""

    @pytest.mark.parametrize(("env", "bad", "error", "match"), ROWS)
    def test_bad_input_gets_one_typed_error(
        self, stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        env: dict[str, str], bad: Any, error: type, match: str,
    ) -> None:  # fmt: skip
        (tmp_path / "providers.yaml").write_text("providers:\n  sim: {base_url: x\nchain: [sim:m]\n")
        for var, value in env.items():
            monkeypatch.setenv(var, value.replace("{tmp}", str(tmp_path)))
        before = objects(stack["s3"])
        with pytest.raises(StepGraphError) as info:
            invoke(STEP, bad)
        assert type(info.value) is error and re.search(match, str(info.value)), str(info.value)
        assert_clear(info.value)
        # Nothing written (no checkpoint, usage object or result) and no provider called.
        assert objects(stack["s3"]) == before and stack["sim"].requests() == []
        # Fixing that one input is all it takes: the same warm container runs the next good event.
        monkeypatch.undo()
        assert invoke(STEP, GOOD)["status"] == "done"

    def test_a_step_on_a_corrupt_thread_fails_typed_every_time(self, stack: dict[str, Any]) -> None:
        s3, bad = stack["s3"], event(item_id="bad")
        assert invoke(STEP, bad, timeout_s=0.5)["status"] == "running"  # margin 1 s: one superstep
        saver = S3Saver(BUCKET, client=s3)
        key = saver.s3.keys(saver.layout.checkpoints("run-1/bad", ""), limit=1)[0]
        raw = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        s3.put_object(Bucket=BUCKET, Key=key, Body=raw[: len(raw) // 2])
        before = objects(s3)
        for _ in range(2):  # a second call finds the same error: no fresh start, no partial result
            with pytest.raises(CorruptCheckpoint, match=f"object {re.escape(key)} is not JSON") as info:
                invoke(STEP, bad)
            assert_clear(info.value)
            assert objects(s3) == before
        assert invoke(STEP, event(item_id="good"))["status"] == "done"  # other items run on
        # The state machine retries no such error (Lambda's errorType is the class name): the item's
        # Catch records it as failed instead of looping.
        steps = list(step_states(json.loads(definition_path().read_text())))
        assert len(steps) == 2
        for state in steps:
            retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert "CorruptCheckpoint" not in retried and "States.ALL" not in retried
            *busy, last = state["Catch"]
            assert last["ErrorEquals"] == ["States.ALL"] and last["Next"].endswith("ItemFailed")
            # Only the account's Lambda concurrency is waited out rather than failed.
            assert [(c["ErrorEquals"], c["Next"].endswith("WaitForLambda")) for c in busy] == [
                (["Lambda.TooManyRequestsException"], True)
            ]
