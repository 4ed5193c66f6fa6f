"""The public API says what it takes, what it gives back and how to use it."""

from __future__ import annotations

import inspect

import pytest

from stepgraph.checkpoint import S3Saver
from stepgraph.limiter import BudgetGuard, DynamoDBRateLimiter
from stepgraph.providers.router import ModelRouter
from stepgraph.runtime.wiring import run_graph_step
from stepgraph.usage.callback import UsageCallbackHandler
from stepgraph.usage.ledger import UsageLedger


@pytest.mark.parametrize(
    "obj",
    [
        S3Saver,
        DynamoDBRateLimiter,
        BudgetGuard,
        UsageCallbackHandler,
        UsageLedger,
        ModelRouter,
        run_graph_step,
    ],
)
def test_public_api_documents_args_returns_and_an_example(obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    assert "Args:" in doc and "Example:" in doc and ">>>" in doc, obj
    assert "Returns" in doc or obj is UsageCallbackHandler, obj  # a callback returns nothing
    params = [p for p in inspect.signature(obj).parameters if p not in ("self", "kwargs")]  # type: ignore[arg-type]
    missing = [p for p in params if p not in doc]
    assert missing == [], (obj, missing)
