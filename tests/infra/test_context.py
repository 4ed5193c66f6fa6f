"""CDK context: bad values and unknown keys are one clear line (also from app.py, without a banner or a
traceback), documented keys reach the functions, and app.py synthesizes quietly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.context import ContextError, load

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"daily_budget_usd": -1}, "daily_budget_usd"),
        ({"alarm_email": "not-an-email"}, "alarm_email"),
        ({"log_retention_days": 4}, "log_retention_days"),
        ({"removal_policy": "sometimes"}, "removal_policy"),
        ({"map_concurrency": "0"}, "map_concurrency"),
        ({"graphs": '{"tickets": "not a function path"}'}, "graphs.tickets"),
        ({"graphs": "[1, 2]"}, "graphs"),
    ],
)
def test_bad_context_values_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ContextError, match=rf"CDK context '{message}'"):
        load(values.get)


def test_context_graphs_reach_the_functions_as_stepgraph_graphs() -> None:
    settings = load({"graphs": '{"tickets": "my_graphs.tickets:build_graph"}', "map_concurrency": "25"}.get)
    env = settings.runtime_env()
    assert json.loads(env["STEPGRAPH_GRAPHS"]) == {"tickets": "my_graphs.tickets:build_graph"}
    assert env["STEPGRAPH_MAP_CONCURRENCY"] == "25"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"daily_budget": "2"}, r"CDK context 'daily_budget' is not a known key \(did you mean 'daily_budget_usd'\? known: alarm_email, "),
        ({"log_retention": "7"}, r"did you mean 'log_retention_days'\?"),
        ({"limits_profile": "gold"}, r"CDK context 'limits_profile': unknown limit profile 'gold' \(known profiles: "),
        ({"providers": "{not json"}, r"CDK context 'providers': is neither JSON nor a file"),
        ({"providers": '{"providers": {}, "chain": []}'}, r"CDK context 'providers': chain: List should have at least 1"),
    ],
)  # fmt: skip
def test_unknown_keys_and_every_documented_key_are_checked(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ContextError, match=message):
        load(values.get, values.keys())


def test_cdk_keys_and_good_values_pass() -> None:
    ctx = {"@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:enable-path-metadata": True,
           "limits_profile": "openrouter-free-1000", "providers": None}  # fmt: skip
    assert load(ctx.get, ctx.keys()).limits_profile == "openrouter-free-1000"


def app_run(layer_dir: Path, tmp_path: Path, context: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """app.py as `npx cdk synth` runs it (context in CDK_CONTEXT_JSON), without the Makefile's environment."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("JSII_")}
    ctx = {"layer_dir": str(layer_dir), "duckdb_layer_dir": str(layer_dir / "duckdb"), **context}
    env |= {"CDK_CONTEXT_JSON": json.dumps(ctx), "CDK_OUTDIR": str(tmp_path),
            "JSII_DEPRECATED": "fail"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_app_bad_context_is_one_line_without_banner(layer_dir: Path, tmp_path: Path) -> None:
    res = app_run(layer_dir, tmp_path, {"log_retention_days": 2})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: CDK context 'log_retention_days': Input should be 1, 3, 5, 7, 14, 30, 60, 90, 180 or 365 (got 2)"
    ]


def test_app_without_a_built_layer_is_one_line(tmp_path: Path) -> None:
    res = app_run(tmp_path / "no-layer", tmp_path, {})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: CDK context 'layer_dir': {tmp_path}/no-layer/python does not exist "
        "(run `make layer` first, or point -c layer_dir= at a built layer)"
    ]


def test_app_synthesizes_quietly(layer_dir: Path, tmp_path: Path) -> None:
    """No jsii Node banner and no deprecated API (JSII_DEPRECATED=fail turns one into an error)."""
    res = app_run(layer_dir, tmp_path, {})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "!!" not in res.stderr and "deprecated" not in res.stderr.lower(), res.stderr[-2000:]
