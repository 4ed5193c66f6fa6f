"""The local stack's handler loading: one warm container per function, however many calls start at once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from stepgraph.local import lambdas


def test_concurrent_first_calls_load_the_handler_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lambdas.cold_start()
    loads: list[str] = []
    real = lambdas.importlib.util.module_from_spec

    def counting(spec: Any) -> Any:
        loads.append(spec.name)
        return real(spec)

    monkeypatch.setattr(lambdas.importlib.util, "module_from_spec", counting)
    start = threading.Barrier(8)
    seen: list[Any] = []

    def first_call() -> None:
        start.wait()
        seen.append(lambdas.load_handler("validate_input"))

    threads = [threading.Thread(target=first_call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["stepgraph_lambda_validate_input"]
    assert all(h is seen[0] for h in seen)  # every call used the same container
    lambdas.cold_start()
