"""Secret canaries: a provider key never appears in anything a run produces.

Random canary keys drive real local runs (the simulator, Step Functions on moto, the real handlers)
through 401, 429, 5xx and 400 faults. Then every channel is scanned for each key, for the part after
its well-known prefix and for their base64 forms: stdout/stderr (Powertools JSON logs, EMF metrics),
Python log records at DEBUG, every S3 object (checkpoints are binary), the limiter table, execution
histories, the handlers' payloads and raised errors, and the simulator's request log. A control
test plants the key in each channel and shows the same scan finds it.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import os
import secrets
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from stepgraph import resources
from stepgraph.config import settings_from
from stepgraph.limiter import BudgetGuard, ensure_limiter_table
from stepgraph.local import lambdas
from stepgraph.local.simulator import SimulatorHandle
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.providers.credits import poll_all
from stepgraph.providers.table import load_provider_table
from stepgraph.runtime.deps import build_dependencies
from tests.fixtures.aws import execute

PREFIX = "sk-or-v1-"
ADMIN_PATH = "/_sim/keys/"  # the simulator's admin URL names the key to revoke
Calls = list[dict[str, Any]]


def new_key(tag: str) -> str:
    return f"{PREFIX}{tag}{secrets.token_hex(16)}"


def forms(key: str) -> list[bytes]:
    """The key, its prefix-free middle, and their base64 forms, also when embedded in a longer
    base64 text (such as `Basic base64(user:key)`): each of the three byte alignments."""
    out: list[bytes] = []
    for text in (key, key.removeprefix(PREFIX)):
        raw = text.encode()
        out.append(raw)
        for pad in range(3):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                enc = encode(b"\0" * pad + raw)
                # Keep only the characters that depend on the key's bytes alone.
                out.append(enc[4 if pad else 0 : 4 * ((pad + len(raw)) // 3)])
    return list(dict.fromkeys(out))


@dataclass
class Corpus:
    """Everything a run produced, by source, as bytes."""

    parts: dict[str, bytes] = field(default_factory=dict)

    def add(self, source: str, data: Any) -> None:
        if isinstance(data, str):
            blob = data.encode()
        elif isinstance(data, bytes):
            blob = data
        else:
            blob = json.dumps(data, default=repr, sort_keys=True).encode()
        if blob[:2] == b"\x1f\x8b":  # gzip'd usage objects: scan the content too
            blob += gzip.decompress(blob)
        self.parts[source] = self.parts.get(source, b"") + blob

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.parts.values())

    def leaks(self, *keys: str) -> dict[str, bytes]:
        """Source -> an excerpt around the first form of a key found in it."""
        found = {}
        for source, blob in self.parts.items():
            for needle in (n for key in keys for n in forms(key)):
                if (at := blob.find(needle)) >= 0:
                    found[source] = blob[max(0, at - 80) : at + 80]
                    break
        return found


def assert_no_leak(corpus: Corpus, *keys: str) -> None:
    leaks = corpus.leaks(*keys)
    assert not leaks, "\n".join(f"{source}: {excerpt!r}" for source, excerpt in leaks.items())


def record_calls(directory: str, handler: Callable[..., Any], calls: Calls) -> Callable[..., Any]:
    """Keep what a handler returned, or the error it raised with its whole traceback."""

    def recorded(event: Any, context: Any) -> Any:
        try:
            result = handler(event, context)
        except Exception as exc:
            calls.append(
                {
                    "function": directory,
                    "event": event,
                    "error": "".join(traceback.format_exception(exc)),
                    "repr": repr(exc),
                    "attrs": vars(exc),
                }
            )
            raise
        calls.append({"function": directory, "event": event, "result": result})
        return result

    return recorded


def collect_process(corpus: Corpus, capfd: pytest.CaptureFixture[str], logs: Logs) -> None:
    out, err = capfd.readouterr()
    corpus.add("stdout", out)
    corpus.add("stderr", err)
    corpus.add("powertools json", logs.json.getvalue())
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    for i, rec in enumerate(logs.records.records):
        if ADMIN_PATH in rec.getMessage():
            continue  # the test's own calls that revoke a key by name; the product never calls these
        corpus.add(f"log[{i}] {rec.name}", formatter.format(rec) + "\n" + repr(vars(rec)))


def collect_bucket(corpus: Corpus, s3: Any, bucket: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            keys.append(obj["Key"])
            corpus.add(
                f"s3://{bucket}/{obj['Key']}", s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            )
    return keys


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Every handler call the local stack (or `lambdas.invoke`) makes, with payload or error."""
    out: Calls = []
    real = lambdas.load_handler
    monkeypatch.setattr(lambdas, "load_handler", lambda d: record_calls(d, real(d), out))
    return out


@dataclass
class Logs:
    records: pytest.LogCaptureFixture  # every library's records at DEBUG
    json: io.StringIO  # the handlers' Powertools JSON lines, as they would reach CloudWatch


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[Logs]:
    for directory in lambdas.HANDLERS.values():
        lambdas.load_handler(directory)  # so their Powertools logger and formatter exist
    service = logging.getLogger(resources.SERVICE_NAME)
    # Powertools' own handler keeps the stdout of whichever test loaded it first, so a mirror with
    # its formatter captures the JSON lines for this test.
    mirror = logging.StreamHandler(io.StringIO())
    mirror.setFormatter(next(h.formatter for h in service.handlers if h.formatter))
    service.addHandler(mirror)
    caplog.set_level(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger=resources.SERVICE_NAME):
            yield Logs(caplog, mirror.stream)
    finally:
        service.removeHandler(mirror)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # Keys must come only from where each test puts them.
    for name in ("OPENROUTER_API_KEY", "OPENROUTER_MANAGEMENT_KEY", "OLLAMA_API_KEY", "STEPGRAPH_PROVIDERS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def stack_env(sim: SimulatorHandle, **keys: str) -> dict[str, str]:
    return {
        "STEPGRAPH_TIME_SCALE": "0.05",
        "STEPGRAPH_STEP_MARGIN_S": "1",
        "STEPGRAPH_LIMIT_MARGIN": "0.05",
        "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
        "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
        "STEPGRAPH_LIMITS_OVERRIDES": json.dumps({"rpd": {"capacity": 1000}}),
        "STEPGRAPH_LOG_LEVEL": "DEBUG",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "POWERTOOLS_METRICS_DISABLED": "false",  # EMF metrics go to stdout and are scanned
        **keys,
    }


def run(st: LocalStack, name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    sfn = st.client("stepfunctions")
    payload = {"graph": "document_pipeline", "items": items, "config": {"max_concurrency": 3}}
    desc = execute(st, payload, name)
    history = [
        e
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=desc["executionArn"])
        for e in page["events"]
    ]
    return {"describe": desc, "history": history}


def collect_stack(
    corpus: Corpus, st: LocalStack, sim: SimulatorHandle, runs: list[dict[str, Any]], calls: Calls
) -> list[str]:
    keys = collect_bucket(corpus, st.client("s3"), st.bucket)
    ddb = st.client("dynamodb")
    corpus.add("limiter table", ddb.scan(TableName=st.limiter_table)["Items"])
    for i, r in enumerate(runs):
        corpus.add(f"execution[{i}]", r)
    corpus.add("stack.invocations", st.invocations)
    corpus.add("handler calls", calls)
    corpus.add("simulator requests", sim.requests())
    corpus.add("simulator stats", sim.stats())
    return keys


def usage_labels(corpus: Corpus) -> set[str]:
    lines = [line for src, blob in corpus.parts.items() if "/usage/" in src for line in blob.splitlines()]
    return {json.loads(line)["key_label"] for line in lines if line.strip()}


def simulator(make: Callable[..., SimulatorHandle], keys: dict[str, str], **account: Any) -> SimulatorHandle:
    return make(rpm=20, rpd=1000, time_scale=0.05, accounts={"accounts": {"main": {"keys": keys, **account}}})


def item_statuses(run: dict[str, Any]) -> list[str]:
    return sorted(i["status"] for i in json.loads(run["describe"]["output"])["items"])


def items(n: int) -> list[dict[str, Any]]:
    return [{"text": f"Ticket {i}: the invoice is wrong.", "max_rounds": 1} for i in range(n)]


def test_a_batch_with_faults_leaks_no_key_anywhere(
    make_simulator: Callable[..., SimulatorHandle],
    clean_env: pytest.MonkeyPatch,
    calls: Calls,
    debug_logs: Logs,
    capfd: pytest.CaptureFixture[str],
) -> None:
    canary, revoked = new_key("CANARY"), new_key("REVOKED")
    sim = simulator(make_simulator, {revoked: "sim-old", canary: "sim-canary"})
    env = stack_env(
        sim, OPENROUTER_API_KEY=f"old={revoked},canary={canary}", OLLAMA_API_KEY=f"ollama={canary}"
    )
    with local_stack(env=env, use_dynamodb_local=False) as st:
        sim.revoke(revoked)  # the first attempt gets a 401 and the runtime rotates to the canary
        sim.queue_faults(
            *[{"status": 429, "retry_after_s": 1}] * 2, *({"status": s} for s in (502, 503, 400))
        )
        faults = run(st, "canary-faults", items(5))
        sim.revoke(canary)  # now no key is left: the item fails fast on a 401
        no_key = run(st, "canary-no-key", items(1))
        corpus = Corpus()
        objects = collect_stack(corpus, st, sim, [faults, no_key], calls)
    collect_process(corpus, capfd, debug_logs)

    # The run went through every path it was meant to, so the scan below can fail.
    statuses = [q["status"] for q in sim.requests()]
    assert {401, 429, 502, 503, 400, 200} <= set(statuses), statuses
    assert any(q["key_label"] == "sim-canary" and q["status"] == 200 for q in sim.requests())
    assert item_statuses(faults) == ["done"] * 4 + ["failed"] and item_statuses(no_key) == ["failed"]
    # The functions' raised errors, with their whole tracebacks, as their workers reported them.
    errors = "\n".join(i.get("message", "") + i.get("trace", "") for i in st.invocations)
    assert "HTTP 400" in errors and "no usable API key left" in errors, errors
    assert {o.split("/")[0] for o in objects} >= {"checkpoints", "usage", "results"}
    assert b'"_aws"' in corpus.parts["stdout"]  # EMF metrics were emitted, and scanned
    assert b'"message":"step ended"' in corpus.parts["stdout"]  # the workers' Powertools JSON lines
    assert "canary" in usage_labels(corpus)  # the runtime's label for the canary, never its value
    assert len(debug_logs.records.records) > 200 and corpus.size > 200_000

    assert_no_leak(corpus, canary, revoked)


def test_keys_from_secrets_manager_leak_nowhere(
    make_simulator: Callable[..., SimulatorHandle],
    clean_env: pytest.MonkeyPatch,
    calls: Calls,
    debug_logs: Logs,
    capfd: pytest.CaptureFixture[str],
) -> None:
    canary, management = new_key("CANARY"), new_key("MGMT")
    sim = simulator(make_simulator, {canary: "sim-canary"}, management_keys={management: "ops"})
    table = load_provider_table(env={})
    with local_stack(env=stack_env(sim), use_dynamodb_local=False) as st:
        sm = st.client("secretsmanager")
        for provider in ("openrouter", "ollama"):
            name = table.providers[provider].secret_id
            assert name == f"{resources.SECRET_PREFIX}{provider}"  # the secret the CDK stack creates
            sm.create_secret(
                Name=name, SecretString=json.dumps({"keys": [{"label": "sm-main", "key": canary}]})
            )
        management_secret = table.providers["openrouter"].management_secret_id
        assert management_secret == f"{resources.SECRET_PREFIX}openrouter{resources.MANAGEMENT_SECRET_SUFFIX}"
        sm.create_secret(Name=management_secret, SecretString=json.dumps({"key": management}))
        debug_logs.records.clear()  # botocore's lines of the operator filling the secret, not the product's
        sim.queue_faults({"status": 429, "retry_after_s": 1}, {"status": 502}, {"status": 400})
        result = run(st, "canary-secrets", items(3))
        env = st.function_env  # the operator's view: configured as the functions are
        deps = build_dependencies(settings_from(env), env)
        report = poll_all(
            deps.settings, table=deps.table, env=deps.env, secrets_client=sm, emitter=deps.metrics()
        )
        corpus = Corpus()
        objects = collect_stack(corpus, st, sim, [result], calls)
        corpus.add("poll report", report)
    collect_process(corpus, capfd, debug_logs)

    assert report["openrouter:main"]["credits_remaining"] is not None, report
    assert report["openrouter:main"]["credits_source"] == "credits", report  # read with the management key
    assert item_statuses(result) == ["done", "done", "failed"]
    assert any(q["key_label"] == "sim-canary" and q["status"] == 200 for q in sim.requests())
    # Only the secret held the key, and the runtime used it under the secret's label.
    assert usage_labels(corpus) == {"sm-main"}
    assert {o.split("/")[0] for o in objects} >= {"checkpoints", "usage", "results"}
    assert b"CreditsRemainingUSD" in corpus.parts["stdout"] and corpus.size > 100_000
    assert_no_leak(corpus, canary, management)


def test_the_credits_poller_leaks_no_key(
    make_simulator: Callable[..., SimulatorHandle],
    clean_env: pytest.MonkeyPatch,
    calls: Calls,
    debug_logs: Logs,
    capfd: pytest.CaptureFixture[str],
    moto_aws: None,
) -> None:
    # The poller also reads the budget guard's day counter from the limiter table (moto here).
    ddb = boto3.client("dynamodb")
    ensure_limiter_table(ddb, resources.LIMITER_TABLE_NAME)
    BudgetGuard(resources.LIMITER_TABLE_NAME, resources.BUDGET_KEY, client=ddb).reserve(0.25)
    canary, revoked = new_key("CANARY"), new_key("REVOKED")
    management, revoked_management = new_key("MGMT"), new_key("MGMTREVOKED")
    sim = simulator(
        make_simulator,
        {canary: "a", revoked: "b"},
        credits_usd=7.5,
        management_keys={management: "ops", revoked_management: "old-ops"},
    )
    sim.revoke(revoked)
    sim.revoke(revoked_management)
    for name, value in stack_env(sim).items():
        clean_env.setenv(name, value)
    reports = []
    # Working keys, then keys the provider refuses with a 401.
    for key, mgmt in ((canary, management), (revoked, revoked_management)):
        clean_env.setenv("OPENROUTER_API_KEY", f"poller={key}")
        clean_env.setenv("OPENROUTER_MANAGEMENT_KEY", mgmt)
        reports.append(lambdas.invoke(resources.CREDITS_POLLER_FUNCTION, {}))
    corpus = Corpus()
    corpus.add("handler calls", calls)
    collect_process(corpus, capfd, debug_logs)

    assert reports[0]["accounts"]["openrouter:main"]["credits_remaining"] == 7.5, reports
    assert reports[0]["spent_today_usd"] == 0.25 and b"SpentTodayUSD" in corpus.parts["stdout"]
    assert reports[1]["accounts"]["openrouter:main"] == {"error": "HTTPStatusError"}, reports
    assert b"CreditsRemainingUSD" in corpus.parts["stdout"] and b"ProviderErrors" in corpus.parts["stdout"]
    assert len(debug_logs.records.records) > 10 and corpus.size > 5_000
    assert_no_leak(corpus, canary, revoked, management, revoked_management)


def test_the_scan_finds_a_planted_key_in_every_channel(
    s3_client: Any,
    s3_bucket: str,
    calls: Calls,
    debug_logs: Logs,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    key = new_key("CANARY")
    middle = key.removeprefix(PREFIX).encode()
    logging.getLogger("stepgraph.providers").debug("calling with %s", key)  # the raw key in a record
    os.write(2, b"token=" + base64.b64encode(middle) + b"\n")  # only the middle's base64, on stderr
    _, checkpoint = JsonPlusSerializer().dumps_typed({"api_key": key})  # msgpack, as checkpoints are stored
    s3_client.put_object(Bucket=s3_bucket, Key="checkpoints/t/1", Body=checkpoint)
    basic = base64.b64encode(b"user:" + key.encode())  # the key's base64 at an offset of a longer text
    s3_client.put_object(
        Bucket=s3_bucket, Key="usage/u.jsonl.gz", Body=gzip.compress(b'{"auth": "%s"}' % basic)
    )

    class ProviderError(Exception):
        pass

    def failing(event: Any, context: Any) -> Any:
        exc = ProviderError("provider call failed")  # a clean message; the key hides in an attribute
        exc.headers = {"Authorization": f"Bearer {key}"}  # type: ignore[attr-defined]
        raise exc

    with pytest.raises(ProviderError):
        record_calls("graph_step", failing, calls)({}, None)
    corpus = Corpus()
    collect_bucket(corpus, s3_client, s3_bucket)
    corpus.add("handler calls", calls)
    collect_process(corpus, capfd, debug_logs)

    leaks = corpus.leaks(key)
    assert {
        "stderr",
        "handler calls",
        f"s3://{s3_bucket}/checkpoints/t/1",
        f"s3://{s3_bucket}/usage/u.jsonl.gz",
    } <= set(leaks), leaks
    assert any(s.startswith("log[") and s.endswith("stepgraph.providers") for s in leaks), leaks
    assert not corpus.leaks(new_key("CANARY"))  # another key of the same shape is not reported
