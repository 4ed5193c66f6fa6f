"""Load statemachine/*.asl.json (shipped in the package) and fill its `${...}` substitutions (moto does
not, CDK does), with the execution timeout the CDK context `max_run_days` would give."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError

PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def definition_path(name: str = resources.STATEMACHINE_FILE) -> Path:
    return resources.data_path("statemachine", name)


def substitute(text: str, values: dict[str, str]) -> str:
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ConfigError(f"state machine definition needs values for {missing}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def load_definition(
    values: dict[str, str],
    name: str = resources.STATEMACHINE_FILE,
    *,
    max_run_days: int = resources.DEFAULT_MAX_RUN_DAYS,
) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(substitute(resources.statemachine_text(name), values))
    definition["TimeoutSeconds"] = resources.run_timeout_s(max_run_days)
    _objects_as_text_for_moto(definition)
    return definition


def _objects_as_text_for_moto(node: Any) -> None:
    """AWS serializes an object given as an aws-sdk S3 PutObject `Body` to JSON; moto 5.x's interpreter
    cannot (it calls `.read()` on the dict). The local copy hands moto the same JSON as text."""
    if isinstance(node, dict):
        if node.get("Resource") == "arn:aws:states:::aws-sdk:s3:putObject":
            params = node.get("Parameters", {})
            body = params.get("Body.$", "")
            if body.startswith("$."):
                params["Body.$"] = f"States.JsonToString({body})"
        for v in node.values():
            _objects_as_text_for_moto(v)
    elif isinstance(node, list):
        for v in node:
            _objects_as_text_for_moto(v)
