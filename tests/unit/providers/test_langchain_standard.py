"""LangChain's standard chat-model unit suite (`langchain-tests`) against the routed model (no sockets:
nothing here calls a provider). Skips are the suite's own and say why: the model holds live clients, so it
is not serializable, and it is built by `build_chat_model`, not from environment variables."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from stepgraph.providers import build_chat_model, load_provider_table
from stepgraph.providers.routed import RoutedChatModel

ENV = {"OPENROUTER_API_KEY": "sk-unused", "STEPGRAPH_OPENROUTER_BASE_URL": "http://127.0.0.1:9/api/v1"}


class TestRoutedChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        table = load_provider_table(env=ENV)
        return {"router": build_chat_model(table, env=ENV).router}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True
