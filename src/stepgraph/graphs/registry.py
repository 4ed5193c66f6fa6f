"""Graph names → `module:function` returning an uncompiled StateGraph.

Built-ins ship with stepgraph; users add theirs with `STEPGRAPH_GRAPHS='{"name": "pkg.mod:build"}'`
(the CDK app bundles the package named by context `graph_package` into a layer).
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

from stepgraph.errors import ConfigError, UnknownGraph

BUILTIN = {
    "document_pipeline": "stepgraph.graphs.document_pipeline:build_graph",
    "fanout": "stepgraph.graphs.fanout:build_graph",
}


def registered(env: dict[str, str] | None = None) -> dict[str, str]:
    raw = (os.environ if env is None else env).get("STEPGRAPH_GRAPHS")
    extra: dict[str, str] = {}
    if raw:
        try:
            extra = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"STEPGRAPH_GRAPHS is not JSON ({exc.msg})", hint='use {"name": "module:function"}'
            ) from None
        bad = [k for k, v in extra.items() if not isinstance(v, str) or ":" not in v]
        if bad:
            raise ConfigError(f"STEPGRAPH_GRAPHS entries {bad} must be 'module:function'")
    return {**BUILTIN, **extra}


def load_graph(name: str, env: dict[str, str] | None = None) -> Any:
    graphs = registered(env)
    if name not in graphs:
        raise UnknownGraph(f"unknown graph {name!r}", hint=f"registered graphs: {', '.join(sorted(graphs))}")
    module_name, _, func = graphs[name].partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), func)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"graph {name!r}: cannot load {graphs[name]} ({exc})") from None
    return builder()
