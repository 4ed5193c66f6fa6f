"""Validators nobody on the project wrote: asl-validator on the state machine definition, checkov and
cfn-lint on the synthesized template (the definition is inline in it), cdk-nag's acknowledged findings,
and `cdk synth` on a fresh clone.

`make test` installs them (npm asl-validator pinned in package.json; checkov in .venv-checkov, whose pins
clash with ours). Each check is shown to fail on a bad input, so a pass means something."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import nag
from infra.state_machine import definition_text
from stepgraph import resources
from tests.infra.conftest import synth

ROOT = Path(__file__).resolve().parents[2]
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
SKIPS = yaml.safe_load((ROOT / "infra" / "checkov_skips.yaml").read_text())
FILLED = {
    "ValidateFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:stepgraph-validate-input",
    "GraphStepFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:stepgraph-graph-step",
    "DataBucketName": "stepgraph-data-123456789012",
}


def tool(path: Path, name: str) -> str:
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make setup` (it installs the validators)")
    return found


def filled_definition(text: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: FILLED[m.group(1)], text)


def asl_validate(definition: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "definition.asl.json"
    path.write_text(definition)
    return subprocess.run(
        [tool(ASL_VALIDATOR, "asl-validator"), "--json-path", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_asl_validator_accepts_the_definition_with_its_substitutions_filled(tmp_path: Path) -> None:
    result = asl_validate(filled_definition(definition_text(resources.DEFAULT_MAX_RUN_DAYS)), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asl_validator_rejects_a_state_name_used_twice(tmp_path: Path) -> None:
    definition = json.loads(filled_definition(resources.statemachine_text()))
    dist = definition["States"]["DistributedMap"]["ItemProcessor"]
    dist["States"]["Step"] = dist["States"].pop("DistStep")  # the name the inline Map uses
    dist["StartAt"] = "Step"
    result = asl_validate(json.dumps(definition), tmp_path)
    assert result.returncode != 0 and "DUPLICATE_STATE_NAMES" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def template_path(layer_dir: Path) -> Path:
    stack, asm = synth(layer_dir)
    return Path(asm.directory) / f"{stack.artifact_id}.template.json"


def checkov_failures(path: Path) -> list[tuple[str, str]]:
    checkov = tool(ROOT / ".venv-checkov" / "bin" / "checkov", "checkov")
    result = subprocess.run(
        [checkov, "-f", str(path), "--framework", "cloudformation", "-o", "json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report: Any = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    return [(f["check_id"], f["resource"].split(".", 1)[1]) for f in report["results"]["failed_checks"]]


def skipped(check: str, resource: str) -> bool:
    entry = SKIPS.get(check)
    return entry is not None and any(resource.startswith(p) for p in entry.get("resources") or [""])


def test_checkov_finds_nothing_beyond_the_listed_skips(template_path: Path) -> None:
    failures = checkov_failures(template_path)
    assert [f for f in failures if not skipped(*f)] == []
    assert all(entry.get("reason") for entry in SKIPS.values())
    stale = [c for c in SKIPS if not any(check == c for check, _ in failures)]
    assert stale == []  # a skip that matches nothing would hide a future finding for no reason


def test_checkov_catches_the_findings_fixed_here(template_path: Path, tmp_path: Path) -> None:
    tpl = json.loads(template_path.read_text())
    res = tpl["Resources"]
    (poller,) = [
        k for k in res if k.startswith("Functionscreditspoller") and res[k]["Type"] == "AWS::Lambda::Function"
    ]
    del res[poller]["Properties"]["DeadLetterConfig"]  # the scheduled poller without its DLQ
    bad = tmp_path / "bad.template.json"
    bad.write_text(json.dumps(tpl))
    assert ("CKV_AWS_116", poller) in checkov_failures(bad)
    assert not skipped("CKV_AWS_116", poller)


def test_the_log_bucket_uses_no_legacy_acl_and_the_poller_schedule_keeps_failed_events(
    template_path: Path,
) -> None:
    res = json.loads(template_path.read_text())["Resources"]
    buckets = [r["Properties"] for r in res.values() if r["Type"] == "AWS::S3::Bucket"]
    assert all("AccessControl" not in b for b in buckets)
    assert any(
        b.get("OwnershipControls") == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]} for b in buckets
    )
    assert "logging.s3.amazonaws.com" in json.dumps(
        [r for r in res.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    )
    rules = [r for r in res.values() if r["Type"] == "AWS::Events::Rule"]
    assert len(rules) == 2  # the credits poller and usage compaction: both keep failed events
    for rule in rules:
        (target,) = rule["Properties"]["Targets"]
        assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}
        assert "DeadLetterConfig" in target


def cfn_lint_errors(path: Path) -> list[str]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return [line for line in result.stdout.splitlines() if ":E" in line]


def test_cfn_lint_sees_the_definition_inline_and_rejects_a_broken_one(
    template_path: Path, tmp_path: Path
) -> None:
    tpl = json.loads(template_path.read_text())
    (sm,) = [r for r in tpl["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    definition = json.loads(sm["Properties"]["DefinitionString"])
    assert definition["States"]["InlineMap"]["ItemProcessor"]["StartAt"] == "Step"  # the ASL itself, inline
    assert cfn_lint_errors(template_path) == []
    definition["States"]["Validate"]["Type"] = "Tusk"
    sm["Properties"]["DefinitionString"] = json.dumps(definition)
    bad = tmp_path / "bad.template.json"
    bad.write_text(json.dumps(tpl))
    assert cfn_lint_errors(bad)


def test_every_acknowledgment_suppresses_a_real_finding(layer_dir: Path) -> None:
    with pytest.raises(Exception, match="ValidationFailed") as info:
        synth(layer_dir, acknowledge=False)
    report = str(info.value)
    for finding in {**nag.ACKNOWLEDGED, **nag.FINDINGS}:
        assert f"AwsSolutions::{finding}" in report, f"{finding} is acknowledged but never found"


def test_synth_on_a_fresh_clone_uses_a_stand_in_layer_and_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path / "out"), "CDK_CONTEXT_JSON": "{}"}  # default layer_dir
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    notes = [line for line in result.stderr.splitlines() if "stand-in layer" in line]
    if (ROOT / "layers" / "build").is_dir():  # this checkout has built the layer: it is used
        assert notes == []
    else:
        assert notes == [
            "note: layers/build is not built: synthesizing against a stand-in layer "
            "(run `make layer` before `cdk deploy`)"
        ]
    assert (tmp_path / "out" / "StepGraph.template.json").is_file()
