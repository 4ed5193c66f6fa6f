"""Names and settings shared by the CDK stack (infra/) and the local stack.

Plain data only: no AWS calls, no heavy imports. `infra/` may import this module and
nothing else of the runtime, so the deployed stack and `stepgraph local up` / `demo`
are built from one definition.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

NAME = "stepgraph"

# One data bucket per stack; everything lives under these prefixes.
PREFIX_CHECKPOINTS = "checkpoints/"
PREFIX_USAGE = "usage/"
# Finished days merged into Parquet: `usage-compacted/dt=YYYY-MM-DD/part-gNNN-NNNNN.parquet` + `_manifest-gNNN.json`.
PREFIX_USAGE_COMPACTED = "usage-compacted/"
# Raw usage objects get this tag once their records are verified in Parquet; lifecycle expires them.
COMPACTED_TAG = ("stepgraph-compacted", "true")
PREFIX_RESULTS = "results/"
# Distributed Map items that failed: `failures/{execution name}/{item_id}.json`, written by the ASL.
PREFIX_FAILURES = "failures/"
PREFIX_ITEMS = "items/"
# Distributed Map results (ResultWriter): `map-runs/{map run id}/manifest.json` and result files.
PREFIX_MAP_RUNS = "map-runs/"
# Items waiting for a person: `reviews/{execution name}/{item_id}.json` holds the pending interrupts and the
# callback task's token (written by graph-step, answered by `stepgraph resume` / the review page).
PREFIX_REVIEWS = "reviews/"
# `stepgraph retry` links: `retries/{original name}/{retry name}.json` (which items ran again where).
PREFIX_RETRIES = "retries/"

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
USAGE_COMPACTED_TABLE = "usage_compacted"
# What the named queries read: compacted days from Parquet, the other days from the raw JSONL.
USAGE_ALL_VIEW = "usage_all"
COMPACTION_FUNCTION = "stepgraph-usage-compaction"
ATHENA_WORKGROUP = "stepgraph"

# Provider keys live in Secrets Manager in AWS, as JSON {"keys": [{"label": ..., "key": ...}]}.
SECRET_PREFIX = "stepgraph/providers/"
# An OpenRouter management key (reads the account balance, GET /api/v1/credits) has its own secret,
# {"key": "..."}, read by the credits poller only.
MANAGEMENT_SECRET_SUFFIX = "-management"

# Environment of the graph-step and credits-poller functions (read by stepgraph.config).
ENV_BUCKET = "STEPGRAPH_BUCKET"
ENV_LIMITER_TABLE = "STEPGRAPH_LIMITER_TABLE"
ENV_PROVIDERS = "STEPGRAPH_PROVIDERS"

# State machine definition files and the `${...}` names they use.
STATEMACHINE_FILE = "graph_fanout.asl.json"
ASL_SUBSTITUTIONS = ("ValidateFunctionArn", "GraphStepFunctionArn", "DataBucketName")
# Items run at once by default. A new AWS account may have only 10 concurrent Lambda executions in all:
# 8 graph-steps leave room for validate-input and the credits poller. Raise it (context map_concurrency,
# or config.max_concurrency) after checking `aws lambda get-account-settings`.
DEFAULT_MAX_CONCURRENCY = 8
# Distributed Map: the share of items that may fail before the Map Run fails; 100 means an item never
# fails the batch (each failed item leaves a record under failures/).
DEFAULT_TOLERATED_FAILURE_PERCENTAGE = 100
# An execution may run as long as its quota needs (CDK context `max_run_days`); Standard workflows
# run at most a year. The definition's TimeoutSeconds is set from it, in the CDK app and locally alike.
DEFAULT_MAX_RUN_DAYS = 30
# An item waits for its review at most this long (config.review_timeout_s), then ends as ReviewTimedOut.
DEFAULT_REVIEW_TIMEOUT_S = 7 * 86_400
MAX_RUN_DAYS_LIMIT = 365


def run_timeout_s(max_run_days: int) -> int:
    return int(max_run_days) * 86_400


METRIC_NAMESPACE = "StepGraph"
SERVICE_NAME = "stepgraph"


def execution_name(execution_id: str) -> str:
    """The execution's name: the last `:` segment of its ARN (a bare name stays as it is).

    Results, failures, items and usage objects are filed under it; the ASL's ItemSelector splits the
    same way (`States.StringSplit` on `:`).
    """
    return execution_id.rsplit(":", 1)[-1]


def data(*parts: str) -> Traversable:
    """A file or folder shipped inside the package (`stepgraph/data/`: statemachine/, athena/, lambdas/,
    items/), read with importlib.resources so a wheel installed anywhere finds it. In a checkout those
    folders are links to the top-level ones the CDK app deploys, so there is one copy of each file."""
    return files("stepgraph").joinpath("data", *parts)


def data_path(*parts: str) -> Path:
    """`data(...)` as a filesystem path (for tools that need one: importing a handler file, DuckDB)."""
    return Path(str(data(*parts)))


def statemachine_text(name: str = STATEMACHINE_FILE) -> str:
    return data("statemachine", name).read_text()


def checkout_root() -> Path:
    """The repository checkout, for the few dev tools that build from it (the layer bench); a clear
    error when stepgraph runs from an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "layers" / "build.py").is_file():
        from stepgraph.errors import ConfigError

        raise ConfigError(
            "this command builds from a checkout of the stepgraph repository",
            hint="run it from a clone (git clone ...; make setup)",
        )
    return root
