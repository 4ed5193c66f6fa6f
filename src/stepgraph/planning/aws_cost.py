"""The AWS bill of one run: Step Functions state transitions, Lambda requests and GB-seconds, DynamoDB and S3
requests, CloudWatch Logs ingestion, priced from one table (`data/prices/aws.json`, its date and sources
inside). The counts follow the state machine and the runtime (docs/costs.md derives each); a sample run
measures the per-step parts (steps per item, checkpoint objects, step duration) where it can.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError

# States an execution enters besides its items' (Validate, ChooseMode, the Map, Summary).
RUN_TRANSITIONS = 4
# Per graph-step call: the Step task and the Route choice; per item: its end state (ItemDone/ItemFailed).
STEP_TRANSITIONS = 2
ITEM_TRANSITIONS = 1
GRAPH_STEP_GB = 1.0  # infra/functions.py: graph-step has 1,024 MB, validate-input 512 MB
VALIDATE_GB, VALIDATE_S = 0.5, 1.0
# DynamoDB per provider request: the limiter's slot, its release or token reconcile, the run's counters.
WRITES_PER_REQUEST, READS_PER_REQUEST = 3.0, 1.0
WRITES_PER_PAID_REQUEST = 2.0  # the budget guard's reservation and its reconcile
WRITES_PER_THROTTLE = 1.0  # the refused slot attempt
# S3 per graph-step call: the thread's checkpoint reads; per item: the result object.
GETS_PER_STEP = 3.0
LOG_BYTES_PER_STEP = 4_000  # Powertools' JSON lines and the EMF metric lines of one step


@dataclass(frozen=True)
class RunShape:
    """What one run does on AWS, per item where it grows with the batch."""

    items: int
    requests: int
    paid_requests: int = 0
    steps_per_item: float = 1.0  # graph-step calls that ran the graph
    throttled_steps: float = 0.0  # graph-step calls that ended throttled (the whole run)
    step_s: float = 2.0  # one graph-step call's duration
    checkpoint_puts_per_item: float = 8.0
    usage_puts_per_step: float = 1.0


def load_prices(path: str | Path | None = None) -> dict[str, Any]:
    """The price table (the packaged one by default); a file missing a price is named."""
    try:
        text = Path(path).read_text() if path else resources.data("prices", "aws.json").read_text()
        table = json.loads(text)
    except OSError as exc:
        raise ConfigError(
            f"--prices {path}: {exc.strerror}", hint="a JSON price table like data/prices/aws.json"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--prices {path}: not JSON ({exc.msg})", hint="a JSON price table") from None
    needed = {
        "step_functions": ["usd_per_state_transition"],
        "lambda": ["usd_per_gb_second_x86_64", "usd_per_request"],
        "dynamodb": ["usd_per_write_request", "usd_per_read_request"],
        "s3": ["usd_per_put_request", "usd_per_get_request"],
        "cloudwatch": ["usd_per_gb_logs_ingested"],
    }
    for section, keys in needed.items():
        for key in keys:
            if not isinstance((table.get(section) or {}).get(key), int | float):
                raise ConfigError(
                    f"price table {path or 'aws.json'}: {section}.{key} is missing or not a number",
                    hint="copy the packaged data/prices/aws.json and edit its numbers",
                )
    return dict(table)


def estimate(shape: RunShape, prices: dict[str, Any]) -> dict[str, Any]:
    """Counts and USD per service, the total, and the price table's date and region."""
    n = shape.items
    steps = n * shape.steps_per_item + shape.throttled_steps
    counts = {
        "state_transitions": RUN_TRANSITIONS
        + STEP_TRANSITIONS * steps
        + shape.throttled_steps  # the Wait state after a throttled step
        + ITEM_TRANSITIONS * n,
        "lambda_requests": steps + 1,
        "lambda_gb_seconds": steps * shape.step_s * GRAPH_STEP_GB + VALIDATE_GB * VALIDATE_S,
        "dynamodb_writes": shape.requests * WRITES_PER_REQUEST
        + shape.paid_requests * WRITES_PER_PAID_REQUEST
        + shape.throttled_steps * WRITES_PER_THROTTLE
        + n,  # the items-done counter
        "dynamodb_reads": shape.requests * READS_PER_REQUEST + steps,
        "s3_puts": n * (shape.checkpoint_puts_per_item + 1) + steps * shape.usage_puts_per_step,
        "s3_gets": steps * GETS_PER_STEP,
        "log_gb": steps * LOG_BYTES_PER_STEP / 1e9,
    }
    sfn, lam, ddb, s3, cw = (prices[k] for k in ("step_functions", "lambda", "dynamodb", "s3", "cloudwatch"))
    usd = {
        "step_functions": counts["state_transitions"] * sfn["usd_per_state_transition"],
        "lambda": counts["lambda_requests"] * lam["usd_per_request"]
        + counts["lambda_gb_seconds"] * lam["usd_per_gb_second_x86_64"],
        "dynamodb": counts["dynamodb_writes"] * ddb["usd_per_write_request"]
        + counts["dynamodb_reads"] * ddb["usd_per_read_request"],
        "s3": counts["s3_puts"] * s3["usd_per_put_request"] + counts["s3_gets"] * s3["usd_per_get_request"],
        "cloudwatch_logs": counts["log_gb"] * cw["usd_per_gb_logs_ingested"],
    }
    return {
        "counts": {k: round(v, 6 if k == "log_gb" else 1) for k, v in counts.items()},
        "usd": {k: round(v, 6) for k, v in usd.items()},
        "total_usd": round(sum(usd.values()), 6),
        "prices_as_of": prices.get("as_of"),
        "prices_region": prices.get("region"),
        "shape": asdict(shape),
    }


def add_aws_estimates(rows: list[dict[str, Any]], prices: dict[str, Any]) -> list[dict[str, Any]]:
    """`cost_by_execution` rows with `aws_estimate_usd` beside the provider spend: each run's AWS bill from
    its items, requests and paid requests (a graph-step call per item, plus one per 429 seen)."""
    for row in rows:
        items = int(row.get("items") or 0)
        shape = RunShape(
            items=items,
            requests=int(row.get("requests") or 0),
            paid_requests=int(row.get("paid_requests") or 0),
            throttled_steps=float(row.get("rate_limited") or 0),
        )
        row["aws_estimate_usd"] = estimate(shape, prices)["total_usd"] if items else 0.0
    return rows
