"""Infra fixtures: the stack synthesized once against a small stand-in layer directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra import nag
from infra.context import StackSettings
from infra.stack import StepGraphStack


@pytest.fixture(scope="session")
def layer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("layer")
    (d / "python").mkdir()
    (d / "python" / "stand_in.py").write_text("# a stand-in layer: tests do not build the real one\n")
    # The usage-compaction function's DuckDB layer: a stand-in beside it.
    (d / "duckdb" / "python").mkdir(parents=True)
    (d / "duckdb" / "python" / "stand_in.py").write_text("# a stand-in for the DuckDB layer\n")
    return d


def synth(layer_dir: Path, *, acknowledge: bool = True, **settings: Any) -> tuple[cdk.Stack, Any]:
    app = cdk.App()
    if not acknowledge:
        original = nag.acknowledge
        nag_ack = StepGraphStack.__init__.__globals__
        nag_ack["acknowledge"] = lambda scope: None
    try:
        stack = StepGraphStack(
            app,
            "StepGraph",
            settings=StackSettings(
                layer_dir=str(layer_dir),
                duckdb_layer_dir=str(layer_dir / "duckdb"),
                alarm_email="ops@example.com",
                **settings,
            ),
        )
    finally:
        if not acknowledge:
            nag_ack["acknowledge"] = original
    nag.add_checks(app)
    return stack, app.synth()


@pytest.fixture(scope="session")
def template(layer_dir: Path) -> Template:
    stack, _ = synth(layer_dir)  # cdk-nag runs during synth: an unacknowledged finding raises here
    return Template.from_stack(stack)
