"""Providers: the provider table, keys, the model router with its error matrix, metrics."""

from stepgraph.providers.errors import AllModelsFailed, ProviderFatal, Throttled
from stepgraph.providers.factory import build_chat_model
from stepgraph.providers.router import ModelRouter, Route, RunState
from stepgraph.providers.table import ProviderTable, load_provider_table

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
