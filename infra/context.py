"""CDK context (cdk.json or `-c key=value`), validated once: a bad value stops synth with one line."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

KEYS = (
    "daily_budget_usd",
    "min_credits_usd",
    "alarm_email",
    "providers",
    "limits_profile",
    "map_concurrency",
    "log_retention_days",
    "removal_policy",
    "layer_dir",
    "duckdb_layer_dir",
    "graph_package",
    "free_requests_alarm",
    "graphs",
)


class StackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_budget_usd: float = Field(5.0, gt=0)
    min_credits_usd: float = Field(1.0, ge=0)
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    providers: str | None = None  # JSON provider table (STEPGRAPH_PROVIDERS)
    limits_profile: str = "openrouter-free"
    map_concurrency: int = Field(10, ge=1, le=10_000)
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 180, 365] = 30
    removal_policy: Literal["retain", "destroy"] = "retain"
    layer_dir: str = "layers/build"
    duckdb_layer_dir: str = "layers/build-duckdb"  # the usage-compaction function's DuckDB
    graph_package: str | None = None
    free_requests_alarm: int = Field(10, ge=0)
    # Graphs in `graph_package` by name, e.g. {"tickets": "my_graphs.tickets:build_graph"}.
    graphs: dict[str, Annotated[str, StringConstraints(pattern=r"^[\w.]+:\w+$")]] | None = None

    def runtime_env(self) -> dict[str, str]:
        """Settings the functions read (STEPGRAPH_*), so what `cdk deploy` was given is what runs."""
        env = {
            "STEPGRAPH_DAILY_BUDGET_USD": f"{self.daily_budget_usd:g}",
            "STEPGRAPH_MAP_CONCURRENCY": str(self.map_concurrency),
        }
        if self.graphs:
            env["STEPGRAPH_GRAPHS"] = json.dumps(self.graphs, sort_keys=True)
        return env


class ContextError(ValueError):
    pass


def load(get: Any) -> StackSettings:
    """`get(key)` reads one context value (App.node.try_get_context)."""
    raw = {k: get(k) for k in KEYS if get(k) is not None}
    for k, v in list(raw.items()):
        if isinstance(v, str) and k in (
            "daily_budget_usd",
            "min_credits_usd",
            "map_concurrency",
            "log_retention_days",
            "free_requests_alarm",
            "graphs",
        ):
            with contextlib.suppress(json.JSONDecodeError):
                raw[k] = json.loads(v)
    try:
        return StackSettings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ContextError(f"CDK context '{key}': {err['msg']} (got {err.get('input')!r})") from None
