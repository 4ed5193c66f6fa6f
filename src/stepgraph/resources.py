"""Names and settings shared by the CDK stack (infra/) and the local stack.

Plain data only: no AWS calls, no heavy imports. `infra/` may import this module and
nothing else of the runtime, so the deployed stack and `stepgraph local up` / `demo`
are built from one definition.
"""

from __future__ import annotations

from pathlib import Path

NAME = "stepgraph"
STACK_NAME = "StepGraph"

# One data bucket per stack; everything lives under these prefixes.
PREFIX_CHECKPOINTS = "checkpoints/"
PREFIX_USAGE = "usage/"
PREFIX_RESULTS = "results/"
# Distributed Map items that failed: `failures/{execution name}/{item_id}.json`, written by the ASL.
PREFIX_FAILURES = "failures/"
PREFIX_ITEMS = "items/"

# Limiter table (also holds BudgetGuard counters under their own keys).
BUDGET_KEY = "spend"  # the stack-wide budget guard's key (graph-step charges it, the poller reads it)
LIMITER_PARTITION_KEY = "pk"
LIMITER_TTL_ATTRIBUTE = "ttl"

# Function names (physical names in the local stack; CDK lets CloudFormation name them).
GRAPH_STEP_FUNCTION = "stepgraph-graph-step"
VALIDATE_FUNCTION = "stepgraph-validate-input"
CREDITS_POLLER_FUNCTION = "stepgraph-credits-poller"
STATE_MACHINE_NAME = "stepgraph-graph-fanout"
LIMITER_TABLE_NAME = "stepgraph-limiter"
DATA_BUCKET_NAME = "stepgraph-data"

# Usage lake.
GLUE_DATABASE = "stepgraph"
USAGE_TABLE = "usage"
USAGE_VIEW = "usage_v"
ATHENA_WORKGROUP = "stepgraph"

# Provider keys live in Secrets Manager in AWS, as JSON {"keys": [{"label": ..., "key": ...}]}.
SECRET_PREFIX = "stepgraph/providers/"
# An OpenRouter management key (reads the account balance, GET /api/v1/credits) has its own secret,
# {"key": "..."}, read by the credits poller only.
MANAGEMENT_SECRET_SUFFIX = "-management"

# Environment of the graph-step and credits-poller functions (read by stepgraph.config).
ENV_BUCKET = "STEPGRAPH_BUCKET"
ENV_LIMITER_TABLE = "STEPGRAPH_LIMITER_TABLE"
ENV_TIME_SCALE = "STEPGRAPH_TIME_SCALE"
ENV_PROVIDERS = "STEPGRAPH_PROVIDERS"

# State machine definition files and the `${...}` names they use.
STATEMACHINE_FILE = "graph_fanout.asl.json"
ASL_SUBSTITUTIONS = ("ValidateFunctionArn", "GraphStepFunctionArn", "DataBucketName")
DEFAULT_MAX_CONCURRENCY = 10

METRIC_NAMESPACE = "StepGraph"
SERVICE_NAME = "stepgraph"


def repo_root() -> Path:
    """The checkout that holds statemachine/, athena/ and lambdas/ (editable installs and tests)."""
    return Path(__file__).resolve().parents[2]


def statemachine_dir() -> Path:
    return repo_root() / "statemachine"


def athena_dir() -> Path:
    return repo_root() / "athena"
