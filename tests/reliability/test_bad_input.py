"""Bad input, row by row: each gets one typed error saying what, where and what to do; nothing else breaks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import operator
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import boto3
import pytest
from botocore.exceptions import ClientError
from langgraph.graph import START, StateGraph
from moto import mock_aws

from stepgraph import resources
from stepgraph.checkpoint import CheckpointStoreError, CorruptCheckpoint, S3Saver
from stepgraph.cli import main
from stepgraph.errors import ConfigError, InvalidInput, StepGraphError, UnknownGraph
from stepgraph.limiter.table import ensure_limiter_table
from stepgraph.local.asl import definition_path
from stepgraph.local.lambdas import cold_start, invoke
from stepgraph.local.simulator import DEV_KEY, running_simulator
from stepgraph.usage.record import UsageRecord
from tests.fixtures.aws import http_s3_client

BUCKET = "stepgraph-data"
EXEC = "arn:aws:states:us-east-1:123456789012:execution:stepgraph-graph-fanout:run-1"
STEP = resources.GRAPH_STEP_FUNCTION
GRAPHS = json.dumps({"echo": f"{__name__}:build_echo_graph"})
GOOD = {"execution_id": EXEC, "item_id": "ok", "item": {"text": "x"}, "graph": "echo", "config": {}}
DROP = object()


class EchoState(TypedDict, total=False):
    text: str
    notes: Annotated[list[str], operator.add]


def build_echo_graph(fail: bool = False) -> StateGraph[Any, Any, Any, Any]:
    """a → b → c, no model calls: only the input around the graph is under test."""

    def c(state: EchoState) -> dict[str, Any]:
        if fail:
            raise RuntimeError("node c failed")
        return {"notes": ["c"]}

    g = StateGraph(EchoState)
    g.add_sequence([("a", lambda s: {"notes": ["a"]}), ("b", lambda s: {"notes": ["b"]}), ("c", c)])
    g.add_edge(START, "a")
    return g


def not_a_graph() -> int:
    return 42


def compiled_graph() -> Any:
    return build_echo_graph().compile()


def assert_clear(exc: BaseException) -> None:
    """Typed, one line, no chained traceback of some inner library error."""
    assert isinstance(exc, StepGraphError) and exc.code.startswith("StepGraph.")
    assert "\n" not in str(exc) and "Traceback" not in str(exc)
    assert exc.__cause__ is None and (exc.__suppress_context__ or exc.__context__ is None)


def objects(s3: Any, bucket: str = BUCKET) -> dict[str, str]:
    """Every object's key and ETag (its content's MD5): any write shows."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return out


def cfg(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


def drop(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not DROP}


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
    ("graph nope", event(graph="nope"), UnknownGraph, r"^event\.graph: unknown graph 'nope' \(registered: document_pipeline, echo, fanout\)$"),
    ("graph os:path", event(graph="os:path"), UnknownGraph, r"^event\.graph: unknown graph 'os:path'"),
    ("graph empty", event(graph=""), InvalidInput, r"^event\.graph: String should have at least 1"),
    ("no item_id", event(item_id=DROP), InvalidInput, r"^event\.item_id: Field required$"),
    ("not an object", ["graph", "echo"], InvalidInput, r"^event\.\(root\): Input should be a valid dict"),
    ("max_concurrency abc", event(config={"max_concurrency": "abc"}), InvalidInput, r"^event\.config\.max_concurrency: Input should be a valid integer"),
    ("max_rounds 0", event(config={"max_rounds": 0}), InvalidInput, r"^event\.config\.max_rounds: Input should be greater than or equal to 1$"),
    ("unknown config key", event(config={"colour": "red"}), InvalidInput, r"^event\.config\.colour: Extra inputs are not permitted$"),
    ("models not a list", event(config={"models": "m"}), InvalidInput, r"^event\.config\.models: Input should be a valid list$"),
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
    return json.dumps({"echo": f"{__name__}:build_echo_graph", "g": target})


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


# -- corrupt checkpoint objects ----------------------------------------------------------------
def not_msgpack(body: dict[str, Any], raw: bytes) -> bytes:
    garbage = ["msgpack", base64.b64encode(b"\xc1\xc1\xc1\xc1").decode()]  # 0xc1: never valid msgpack
    if "checkpoint" in body:
        body["checkpoint"] = garbage
    else:
        body["writes"][0][2] = garbage
    return json.dumps(body).encode()


def edit(**changes: Any) -> Callable[[dict[str, Any], bytes], bytes]:
    return lambda body, raw: json.dumps(drop({**body, **changes})).encode()


class Vanishing:
    """An S3 client on which one listed object is gone by the time it is read (a concurrent delete)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client, self.key = client, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"] == self.key:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "gone"}}, "GetObject")
        return self.client.get_object(**kwargs)


VANISH = object()
CHECKPOINT_ROWS = [
    ("checkpoint truncated", "checkpoint", lambda b, raw: raw[: len(raw) // 2], CorruptCheckpoint, "is not JSON"),
    ("checkpoint not JSON", "checkpoint", lambda b, raw: b"\x89PNG\r\n" + raw, CorruptCheckpoint, "is not JSON"),
    ("checkpoint not msgpack", "checkpoint", not_msgpack, CorruptCheckpoint, "cannot be read"),
    ("checkpoint version 2", "checkpoint", edit(v=2), CorruptCheckpoint, "has schema version 2; this stepgraph reads version 1"),
    ("checkpoint no version", "checkpoint", edit(v=DROP), CorruptCheckpoint, "has schema version None"),
    ("checkpoint no metadata", "checkpoint", edit(metadata=DROP), CorruptCheckpoint, r"cannot be read \(KeyError: 'metadata'\)"),
    ("writes truncated", "writes", lambda b, raw: raw[:-9], CorruptCheckpoint, "is not JSON"),
    ("writes not msgpack", "writes", not_msgpack, CorruptCheckpoint, "cannot be read"),
    ("writes version 2", "writes", edit(v=2), CorruptCheckpoint, "has schema version 2"),
    ("writes object gone", "writes", VANISH, CheckpointStoreError, "disappeared while it was read"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("target", "mutate", "error", "match"), [pytest.param(*r[1:], id=r[0]) for r in CHECKPOINT_ROWS]
)
def test_corrupt_checkpoint_object(
    s3_client: Any, s3_bucket: str, target: str, mutate: Any, error: type, match: str
) -> None:
    saver = S3Saver(s3_bucket, client=s3_client)
    build_echo_graph().compile(checkpointer=saver).invoke({"text": "fine"}, cfg("good"))
    with pytest.raises(RuntimeError, match="node c failed"):  # leaves c's error pending on "bad"
        build_echo_graph(fail=True).compile(checkpointer=saver).invoke({"text": "x"}, cfg("bad"))
    good_history = [t.checkpoint["id"] for t in saver.list(cfg("good"))]
    newest = saver.s3.keys(saver.layout.checkpoints("bad", ""), limit=1)[0]
    writes = saver.s3.keys(saver.layout.writes("bad", "", saver.layout.parse_checkpoint_key(newest)[2]))
    key = newest if target == "checkpoint" else writes[0]
    reader = saver
    if mutate is VANISH:
        reader = S3Saver(s3_bucket, client=Vanishing(s3_client, key))
    else:
        raw = s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=mutate(json.loads(raw), raw))
    before = objects(s3_client, s3_bucket)

    with pytest.raises(StepGraphError) as info:
        reader.get_tuple(cfg("bad"))
    assert type(info.value) is error and re.search(match, str(info.value)), str(info.value)
    assert key in str(info.value)
    assert_clear(info.value)
    # LangGraph and the async path see the same error, never an empty thread they would start over.
    graph = build_echo_graph().compile(checkpointer=reader)
    for attempt in (
        lambda: graph.get_state(cfg("bad")),
        lambda: graph.invoke(None, cfg("bad")),
        lambda: asyncio.run(reader.aget_tuple(cfg("bad"))),
    ):
        with pytest.raises(error, match=re.escape(key)):
            attempt()
    assert objects(s3_client, s3_bucket) == before  # reading never rewrites anything
    good = reader.get_tuple(cfg("good"))
    assert good is not None and sorted(good.checkpoint["channel_values"]["notes"]) == ["a", "b", "c"]
    assert [t.checkpoint["id"] for t in reader.list(cfg("good"))] == good_history


# -- corrupt usage objects ---------------------------------------------------------------------
def record(**changes: Any) -> str:
    base = UsageRecord(ts="2026-03-01T10:00:00Z", model_requested="m", prompt_tokens=10, cost_usd=0.001)
    base = base.model_dump(mode="json")
    return json.dumps(drop({**base, **changes}))


def lines(*bad: str) -> bytes:
    return "".join(line + "\n" for line in (record(), *bad)).encode()


USAGE_ROWS = [
    ("line not JSON", "inv.jsonl", lines("{not json"), r"line 2: not JSON \(Expecting property name"),
    ("line an array", "inv.jsonl", lines("[1, 2]"), "line 2: a JSON list, not an object"),
    ("record without ts", "inv.jsonl", lines(record(ts=DROP)), "line 2: missing field ts"),
    ("wrong type", "inv.jsonl", lines(record(prompt_tokens="many")), 'line 2: field prompt_tokens is "many", not bigint'),
    ("truncated gzip", "inv.jsonl.gz", gzip.compress(lines(record()))[:-12], "cannot be read"),
]  # fmt: skip


@pytest.mark.parametrize("where", ["s3", "dir"])
@pytest.mark.parametrize(("name", "body", "match"), [pytest.param(*r[1:], id=r[0]) for r in USAGE_ROWS])
def test_corrupt_usage_object(
    s3_client: Any, s3_bucket: str, moto_server: str, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str, name: str, body: bytes,
    match: str,
) -> None:  # fmt: skip
    # The report reads S3 through DuckDB's own HTTP client: S3 here is a moto server, not the in-process mock.
    store = http_s3_client(moto_server) if where == "s3" else s3_client
    if where == "s3":
        with contextlib.suppress(ClientError):
            store.create_bucket(Bucket=s3_bucket)
    root = tmp_path_factory.mktemp("runs [q1]")  # brackets: the name is text, not terminal markup
    good_key, bad_key = "usage/dt=2026-03-01/run-1/a.jsonl", f"usage/dt=2026-03-01/run-1/{name}"
    objs = {good_key: lines(record(), record()), bad_key: body}
    for key, data in objs.items():
        store.put_object(Bucket=s3_bucket, Key=key, Body=data)
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    source = f"s3://{s3_bucket}" if where == "s3" else str(root)
    before = objects(store, s3_bucket)
    monkeypatch.setenv("COLUMNS", "400")  # one line on stderr, unwrapped
    cmd = "usage report -q spend_by_day_model --format json --source"
    endpoint = ["--endpoint-url", moto_server] if where == "s3" else []
    monkeypatch.setattr(sys, "argv", ["stepgraph", *cmd.split(), source, *endpoint])
    with pytest.raises(SystemExit) as code:
        main()
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and "Traceback" not in err and "\n" not in err, err
    assert err.startswith(f"error: usage object {source}/{bad_key} "), err
    assert re.search(match, err) and "(move that object out of usage/" in err, err
    assert objects(store, s3_bucket) == before and (root / bad_key).read_bytes() == body  # only read
    # --skip-bad-lines reports the bad line and counts every sound record, the bad object's too.
    monkeypatch.setattr(sys, "argv", ["stepgraph", *cmd.split(), source, "--skip-bad-lines"])
    with pytest.raises(SystemExit) as code:
        main()
    captured = capsys.readouterr()
    sound = 3 + (0 if name.endswith(".gz") else 1)
    assert code.value.code == 0 and [
        r["requests"] for r in json.loads(captured.out)["queries"]["spend_by_day_model"]
    ] == [sound]
    assert (
        f"skipped: {source}/{bad_key}" in captured.err and "skipped 1 corrupt usage line(s)" in captured.err
    )
    monkeypatch.setattr(sys, "argv", ["stepgraph", *cmd.split(), source, *endpoint])
    # The rest is sound: without the bad object, the report counts the other records.
    store.delete_object(Bucket=s3_bucket, Key=bad_key)
    (root / bad_key).unlink()
    with pytest.raises(SystemExit) as code:
        main()
    out = json.loads(capsys.readouterr().out)
    assert code.value.code == 0 and [r["requests"] for r in out["queries"]["spend_by_day_model"]] == [3]
