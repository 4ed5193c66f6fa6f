"""Graph names → `module:function` returning an uncompiled StateGraph.

Built-ins ship with stepgraph; users add theirs with `STEPGRAPH_GRAPHS='{"name": "pkg.mod:build"}'`
(the CDK app bundles the package named by context `graph_package` into a layer).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from typing import Any

from stepgraph.errors import ConfigError, UnknownGraph

BUILTIN = {
    "document_pipeline": "stepgraph.graphs.document_pipeline:build_graph",
    "fanout": "stepgraph.graphs.fanout:build_graph",
    "support_agent": "stepgraph.graphs.support_agent:build_graph",
    "triage_with_review": "stepgraph.graphs.triage_with_review:build_graph",
}
# The model roles a graph asks for (`runtime.context.model_for(role)`): an execution's `config.models`
# mapping may name only these. A graph not listed accepts any role. Users declare theirs in
# `STEPGRAPH_GRAPH_ROLES='{"my_graph": ["default", "fast"]}'`.
BUILTIN_ROLES: dict[str, tuple[str, ...]] = {
    "document_pipeline": ("default",),
    "fanout": ("default",),
    "support_agent": ("default", "fast"),
    "triage_with_review": ("default",),
}


def registered(env: Mapping[str, str]) -> dict[str, str]:
    """The built-in graphs and the ones `env["STEPGRAPH_GRAPHS"]` adds."""
    raw = env.get("STEPGRAPH_GRAPHS")
    extra: dict[str, str] = {}
    if raw:
        try:
            extra = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"STEPGRAPH_GRAPHS is not JSON ({exc.msg})", hint='use {"name": "module:function"}'
            ) from None
        if not isinstance(extra, dict):
            raise ConfigError(
                f"STEPGRAPH_GRAPHS must be a JSON object, not {type(extra).__name__}",
                hint='use {"name": "module:function"}',
            )
        bad = [k for k, v in extra.items() if not isinstance(v, str) or ":" not in v]
        if bad:
            raise ConfigError(f"STEPGRAPH_GRAPHS entries {bad} must be 'module:function'")
    return {**BUILTIN, **extra}


def graph_roles(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """The roles each graph declares: the built-ins' and `env["STEPGRAPH_GRAPH_ROLES"]`."""
    raw = env.get("STEPGRAPH_GRAPH_ROLES")
    if not raw:
        return dict(BUILTIN_ROLES)
    try:
        extra = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"STEPGRAPH_GRAPH_ROLES is not JSON ({exc.msg})", hint='use {"graph": ["default", "fast"]}'
        ) from None
    if not isinstance(extra, dict) or not all(
        isinstance(v, list) and all(isinstance(r, str) for r in v) for v in extra.values()
    ):
        raise ConfigError("STEPGRAPH_GRAPH_ROLES must map graph names to lists of role names")
    return {**BUILTIN_ROLES, **{k: ("default", *[r for r in v if r != "default"]) for k, v in extra.items()}}


def graph_config_schema(name: str, graphs: Mapping[str, str] = BUILTIN) -> Any:
    """The `CONFIG_SCHEMA` the graph's module declares (its `config.graph_config` settings), or None."""
    module_name = graphs[name].partition(":")[0]
    try:
        return getattr(importlib.import_module(module_name), "CONFIG_SCHEMA", None)
    except ImportError:
        return None  # load_graph names the problem


def load_graph(name: str, graphs: Mapping[str, str] = BUILTIN) -> Any:
    """The uncompiled StateGraph registered as `name` (`graphs` from `registered(env)`)."""
    if name not in graphs:
        raise UnknownGraph(f"unknown graph {name!r}", hint=f"registered graphs: {', '.join(sorted(graphs))}")
    from langgraph.graph import StateGraph

    target = graphs[name]
    where = "STEPGRAPH_GRAPHS" if name not in BUILTIN or target != BUILTIN[name] else "built-in graphs"
    module_name, _, func = target.partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"graph {name!r}: cannot load {target} ({exc})", hint=f"check {where}") from None
    if not callable(builder):
        raise ConfigError(
            f"graph {name!r}: {target} is a {type(builder).__name__}, not a function", hint=f"check {where}"
        )
    graph = builder()
    # A compiled graph or anything else would fail later with an unrelated AttributeError.
    if not isinstance(graph, StateGraph):
        raise ConfigError(
            f"graph {name!r}: {target} returned {type(graph).__name__}, not an uncompiled StateGraph",
            hint="return the StateGraph builder; graph-step compiles it with the S3 checkpointer",
        )
    return graph
