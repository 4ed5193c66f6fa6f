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
from pydantic import BaseModel

from stepgraph.clock import SYSTEM_CLOCK
from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
from stepgraph.local.simulator import DEV_KEY, SimulatorHandle, running_simulator
from stepgraph.providers import build_chat_model, load_provider_table
from stepgraph.providers.routed import RoutedChatModel, StructuredOutputInvalid
from stepgraph.schemas import RunConfig
from stepgraph.usage.callback import UsageCallbackHandler
from tests.fixtures.langchain_suite import RoutedModelCapabilities

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


class TestRoutedChatModelOverSimulator(RoutedModelCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"router": routed_model_router()}


def test_streamed_paid_calls_keep_their_cost_and_every_attempt_leaves_one_record(
    simulator_for_the_suite: SimulatorHandle,
) -> None:
    sink = Records()
    paid = build_chat_model(
        SIM["table"],
        RunConfig(models=["openrouter:openai/gpt-oss-120b"]),
        env=SIM["env"],
        callbacks=[UsageCallbackHandler(sink)],
    )
    chunks = list(paid.stream("sim-reply: a streamed paid answer"))
    assert "".join(str(c.content) for c in chunks) == "a streamed paid answer"
    assert paid.invoke("sim-reply: and one more").content == "and one more"
    sent = simulator_for_the_suite.requests()[-2:]
    assert [r.generation_id for r in sink.records] == [s["generation_id"] for s in sent]
    assert [r.cost_usd for r in sink.records] == [pytest.approx(s["cost"]) for s in sent]
    assert (
        sink.records[0].streamed
        and sink.records[0].cost_usd > 0
        and sink.records[0].cost_source == "provider"
    )


def test_simulated_faults_reach_the_caller_typed(simulator_for_the_suite: SimulatorHandle) -> None:
    from langchain_core.tools import tool

    @tool
    def lookup(order_id: int) -> str:
        """Look an order up."""
        return "ok"

    model = RoutedChatModel(router=routed_model_router())
    broken = model.bind_tools([lookup]).invoke("lookup 7\nsim-fault: malformed-tool-args")
    assert broken.tool_calls == [] and broken.invalid_tool_calls[0]["name"] == "lookup"

    class Label(BaseModel):
        category: str

    with pytest.raises(StructuredOutputInvalid, match="not JSON"):
        model.with_structured_output(Label, method="json_schema").invoke("sim-fault: invalid-json")


def test_langgraphs_prebuilt_agent_runs_on_the_routed_model(simulator_for_the_suite: SimulatorHandle) -> None:
    import warnings

    from langchain_core.tools import tool

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import create_react_agent

    @tool
    def order_status(order_id: int) -> str:
        """The status of an order."""
        return f"order {order_id}: delivered"

    agent = create_react_agent(RoutedChatModel(router=routed_model_router()), [order_status])
    out = agent.invoke({"messages": [("user", "Where is order 88?")]})
    kinds = [m.type for m in out["messages"]]
    assert kinds == ["human", "ai", "tool", "ai"] and out["messages"][2].content == "order 88: delivered"
