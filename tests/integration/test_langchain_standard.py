"""LangChain's standard chat-model integration suite (`langchain-tests`) against the routed model over the
in-process simulator: every call goes through the router, a limiter and the usage callback.

What the simulator cannot have is declared below, and the suite skips those tests with its own reason:
image, PDF and audio inputs (the simulator reads text only), Anthropic-style content blocks, and
per-call model overrides (a chain, not a model name, picks the model)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests

from stepgraph.clock import SYSTEM_CLOCK
from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
from stepgraph.local.simulator import DEV_KEY, SimulatorHandle, running_simulator
from stepgraph.providers import build_chat_model, load_provider_table
from stepgraph.providers.routed import RoutedChatModel
from stepgraph.usage.callback import UsageCallbackHandler

SIM: dict[str, Any] = {}


class Records:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def add(self, record: Any) -> None:
        self.records.append(record)


@pytest.fixture(scope="module", autouse=True)
def simulator_for_the_suite() -> Iterator[SimulatorHandle]:
    with running_simulator(rpm=100_000, rpd=1_000_000) as sim:
        env = {"OPENROUTER_API_KEY": DEV_KEY, "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url}
        store = MemoryStore()
        SIM.update(env=env, table=load_provider_table(env=env), sink=Records(), store=store)
        yield sim
    SIM.clear()


def routed_model_router() -> Any:
    limiter = DynamoDBRateLimiter(
        "t", "openrouter:main", [Limit("rpm", 100_000, 60)], store=SIM["store"], clock=SYSTEM_CLOCK
    )
    return build_chat_model(
        SIM["table"],
        env=SIM["env"],
        limiter_factory=lambda provider, spec, model: limiter,
        callbacks=[UsageCallbackHandler(SIM["sink"])],
    ).router


class TestRoutedChatModelOverSimulator(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[RoutedChatModel]:
        return RoutedChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": routed_model_router()}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False


def test_the_suite_went_through_the_usage_callback() -> None:
    # Runs after the suite in this module: every provider attempt left one record.
    sink = SIM["sink"]
    assert len(sink.records) > 20
    assert all(r.generation_id.startswith("gen-") for r in sink.records if r.status == "ok")
