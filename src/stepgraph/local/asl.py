"""Load statemachine/*.asl.json and fill its `${...}` substitutions (moto does not, CDK does)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError

PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def definition_path(name: str = resources.STATEMACHINE_FILE) -> Path:
    return resources.statemachine_dir() / name


def substitute(text: str, values: dict[str, str]) -> str:
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise ConfigError(f"state machine definition needs values for {missing}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def load_definition(values: dict[str, str], name: str = resources.STATEMACHINE_FILE) -> dict[str, Any]:
    return json.loads(substitute(definition_path(name).read_text(), values))
