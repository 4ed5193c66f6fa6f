"""Providers: the provider table, keys, the model router with its error matrix, metrics.

Names load on first use (PEP 562): the provider table alone must not import LangChain, so the
validate-input function can check model names without paying for the chat model's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stepgraph.lazy import lazy_getattr

if TYPE_CHECKING:
    from stepgraph.providers.errors import AllModelsFailed, ProviderFatal, Throttled
    from stepgraph.providers.factory import build_chat_model
    from stepgraph.providers.router import ModelRouter, Route, RunState
    from stepgraph.providers.table import ProviderTable, load_provider_table

_HOME = {
    "AllModelsFailed": "errors",
    "ProviderFatal": "errors",
    "Throttled": "errors",
    "build_chat_model": "factory",
    "ModelRouter": "router",
    "Route": "router",
    "RunState": "router",
    "ProviderTable": "table",
    "load_provider_table": "table",
}

__all__ = [
    "AllModelsFailed",
    "ModelRouter",
    "ProviderFatal",
    "ProviderTable",
    "Route",
    "RunState",
    "Throttled",
    "build_chat_model",
    "load_provider_table",
]


__getattr__ = lazy_getattr(__name__, _HOME, globals())
