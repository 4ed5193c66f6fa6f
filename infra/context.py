"""CDK context (cdk.json or `-c key=value`), validated once: a bad value stops synth with one line."""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from stepgraph import resources

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
    "max_run_days",
    "graph_step_reserved_concurrency",
)


class StackSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daily_budget_usd: float = Field(5.0, gt=0)
    min_credits_usd: float = Field(1.0, ge=0)
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    providers: str | None = None  # JSON provider table (STEPGRAPH_PROVIDERS)
    limits_profile: str = "openrouter-free"
    map_concurrency: int = Field(resources.DEFAULT_MAX_CONCURRENCY, ge=1, le=10_000)
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 180, 365] = 30
    removal_policy: Literal["retain", "destroy"] = "retain"
    layer_dir: str = "layers/build"
    duckdb_layer_dir: str = "layers/build-duckdb"  # the usage-compaction function's DuckDB
    graph_package: str | None = None
    free_requests_alarm: int = Field(10, ge=0)
    # Graphs in `graph_package` by name, e.g. {"tickets": "my_graphs.tickets:build_graph"}.
    # How long one execution may run (a batch waits for its quota, e.g. 50 free requests per UTC day).
    max_run_days: int = Field(resources.DEFAULT_MAX_RUN_DAYS, ge=1, le=resources.MAX_RUN_DAYS_LIMIT)
    # Reserved concurrency for graph-step; None leaves it unreserved (a new account may have only 10
    # concurrent executions in all, and AWS keeps 10 unreserved, so it cannot reserve any).
    graph_step_reserved_concurrency: int | None = Field(None, ge=1, le=10_000)
    graphs: dict[str, Annotated[str, StringConstraints(pattern=r"^[\w.]+:\w+$")]] | None = None

    @field_validator("providers", mode="before")
    @classmethod
    def _provider_table(cls, v: Any) -> Any:
        """The table the functions will load (STEPGRAPH_PROVIDERS), checked as they check it."""
        if v is None:
            return v
        text = v if isinstance(v, str) else json.dumps(v)
        from stepgraph.errors import ConfigError
        from stepgraph.providers.table import load_provider_table

        try:
            load_provider_table(text, env={})  # base-URL overrides do not matter to the check
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("STEPGRAPH_PROVIDERS").lstrip(": ")) from None
        return text

    @field_validator("limits_profile")
    @classmethod
    def _known_profile(cls, v: str) -> str:
        from stepgraph.errors import ConfigError
        from stepgraph.limiter.profiles import load_profile

        try:
            load_profile(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v

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


# Keys the CDK itself keeps in the context (feature flags are "@aws-cdk/...", its own "aws:cdk:...").
CDK_KEYS = {"acknowledged-issue-numbers", "cli-telemetry"}


def unknown_keys(keys: Iterable[str]) -> None:
    """A key that is ours in shape (lowercase words) but not known is a typo: say which, and the closest."""
    known = sorted(set(KEYS) | set(StackSettings.model_fields))
    for key in sorted(keys):
        if key in known or key in CDK_KEYS or not re.fullmatch(r"[a-z][a-z0-9_-]*", key):
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ContextError(f"CDK context '{key}' is not a known key ({hint}known: {', '.join(known)})")


def load(get: Any, keys: Iterable[str] = ()) -> StackSettings:
    """`get(key)` reads one context value (App.node.try_get_context); `keys` are every key given
    (App.node.get_all_context()), so a misspelt one fails instead of being ignored."""
    unknown_keys(keys)
    raw = {k: get(k) for k in KEYS if get(k) is not None}
    for k, v in list(raw.items()):
        if isinstance(v, str) and k in (
            "daily_budget_usd",
            "min_credits_usd",
            "map_concurrency",
            "log_retention_days",
            "free_requests_alarm",
            "graphs",
            "max_run_days",
            "graph_step_reserved_concurrency",
        ):
            with contextlib.suppress(json.JSONDecodeError):
                raw[k] = json.loads(v)
    try:
        return StackSettings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ContextError(f"CDK context '{key}': {msg} (got {err.get('input')!r})") from None


def check_paths(settings: StackSettings) -> None:
    """The directories the stack bundles exist (checked by the app, so that tests may use stand-ins)."""
    from pathlib import Path

    # The default, not built yet (a fresh clone's `make synth`): the stack uses a stand-in and says so.
    default = StackSettings.model_fields["layer_dir"].default
    if settings.layer_dir != default and not (Path(settings.layer_dir) / "python").is_dir():
        raise ContextError(
            f"CDK context 'layer_dir': {settings.layer_dir}/python does not exist "
            "(run `make layer` first, or point -c layer_dir= at a built layer)"
        )
    if settings.graph_package and not Path(settings.graph_package).is_dir():
        raise ContextError(f"CDK context 'graph_package': {settings.graph_package} is not a directory")
