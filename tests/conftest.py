"""Shared fixtures. Each area keeps its fixtures in tests/fixtures/<area>.py."""

from __future__ import annotations

import os

# Tests never reach real AWS: fake credentials and a fixed region for every boto3 client.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

# Hypothesis' per-example deadline (200 ms) times the machine, not the code: on a loaded CI host one slow
# example failed a property that holds. Properties here are checked by their assertions alone.
from hypothesis import settings

settings.register_profile("stepgraph", deadline=None)
settings.load_profile("stepgraph")

pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.dynamodb_local",
    "tests.fixtures.simulator",
]
