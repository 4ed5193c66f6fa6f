"""What a light entry point imports: the validate-input function checks model names and profiles without
loading LangChain, and the lazy package attributes still resolve to the real objects."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_validate_input_checks_config_without_loading_langchain() -> None:
    code = (
        "import sys, stepgraph.runtime.validate as v; "
        "print(sorted(m for m in ('langchain_core', 'langchain_openai', 'langgraph', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_lazy_package_attributes_are_the_real_objects() -> None:
    import stepgraph.limiter as limiter_pkg
    import stepgraph.providers as providers_pkg
    from stepgraph.limiter.limiter import DynamoDBRateLimiter
    from stepgraph.providers.factory import build_chat_model

    assert limiter_pkg.DynamoDBRateLimiter is DynamoDBRateLimiter
    assert providers_pkg.build_chat_model is build_chat_model
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        _ = limiter_pkg.Nope
