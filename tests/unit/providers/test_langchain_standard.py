"""LangChain's standard chat-model unit suite (`langchain-tests`) against the routed model (no sockets:
nothing here calls a provider). Skips are the suite's own and say why: the model holds live clients, so it
is not serializable, and it is built by `build_chat_model`, not from environment variables."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from stepgraph.providers import build_chat_model, load_provider_table
from tests.fixtures.langchain_suite import RoutedModelCapabilities

ENV = {"OPENROUTER_API_KEY": "sk-unused", "STEPGRAPH_OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1"}


class TestRoutedChatModelUnit(RoutedModelCapabilities, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        table = load_provider_table(env=ENV)
        return {"router": build_chat_model(table, env=ENV).router}
