"""The routed model as a LangChain chat model, over fake providers (no sockets): keywords reach the provider,
capabilities pick the deployment, tools and structured output, async waits, streaming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import Runnable
from pydantic import BaseModel

from stepgraph.clock import FakeClock
from stepgraph.limiter import DynamoDBRateLimiter, Limit, MemoryStore
from stepgraph.providers.errors import NoCapableModel, StreamInterrupted
from stepgraph.providers.keys import KeyRing
from stepgraph.providers.routed import RoutedChatModel, StructuredOutputInvalid
from stepgraph.providers.router import ModelRouter, Route
from stepgraph.providers.table import ModelSpec


class Fake(Runnable[Any, Any]):
    """A provider client: records each call's keywords; replies with the next scripted outcome."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, Any]] = []

    def _next(self, kwargs: dict[str, Any]) -> Any:
        self.calls.append(kwargs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome if isinstance(outcome, AIMessage | list) else AIMessage(outcome)

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self._next(kwargs)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        return self._next(kwargs)

    def stream(self, input: Any, config: Any = None, **kwargs: Any) -> Iterator[Any]:
        outcome = self._next(kwargs)
        for part in outcome:
            if isinstance(part, BaseException):
                raise part
            yield AIMessageChunk(part) if isinstance(part, str) else part

    async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        for chunk in self.stream(input, config, **kwargs):
            yield chunk


def route(
    fake: Fake, name: str = "m", *, capabilities: list[str] | None = None, limiter: Any = None
) -> Route:
    spec = ModelSpec(free=True, **({"capabilities": capabilities} if capabilities is not None else {}))
    return Route("p", name, spec, KeyRing("p", [("main", "sk")]), lambda key: fake, limiter)


def model(*routes: Route, clock: Any = None) -> RoutedChatModel:
    return RoutedChatModel(
        router=ModelRouter(list(routes), clock=clock or FakeClock(), remaining_s=lambda: 60)
    )


def http_error(status: int) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://provider/chat/completions")
    return openai.APIStatusError(
        f"HTTP {status}", response=httpx.Response(status, request=request), body=None
    )


def test_every_call_keyword_reaches_the_provider() -> None:
    fake = Fake("ok")
    bound = model(route(fake)).bind(temperature=0.2, max_tokens=7, response_format={"type": "json_object"})
    assert bound.invoke("hi", stop=["END"]).content == "ok"
    sent = fake.calls[0]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 7 and sent["stop"] == ["END"]
    assert sent["response_format"] == {"type": "json_object"} and sent["timeout"] == 60


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_bind_tools_sends_openai_tools_tool_choice_and_parallel_flag() -> None:
    fake = Fake("a", "b", "c")
    m = model(route(fake))
    m.bind_tools([add], tool_choice="add", parallel_tool_calls=False).invoke("x")
    m.bind_tools([add], tool_choice="any").invoke("x")
    m.bind_tools([add]).invoke("x")
    first, second, third = fake.calls
    assert first["tools"][0]["function"]["name"] == "add"
    assert first["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    assert first["parallel_tool_calls"] is False
    assert second["tool_choice"] == "required" and "tool_choice" not in third
    with pytest.raises(ValueError, match="names no bound tool"):
        m.bind_tools([add], tool_choice="subtract")


def test_a_call_that_needs_tools_skips_a_model_without_them_and_fails_typed_when_none_has_them() -> None:
    plain, tooled = Fake("plain", "plain again"), Fake("tooled")
    m = model(route(plain, "a", capabilities=["structured_output"]), route(tooled, "b"))
    assert m.bind_tools([add]).invoke("x").content == "tooled"
    assert m.invoke("x").content == "plain"  # a call without tools still goes to the first model
    assert len(plain.calls) == 1 and len(tooled.calls) == 1
    # Inside a pool, the members without tools are passed over the same way.
    member_a, member_b = Fake(), Fake("from b")
    pool_a, pool_b = route(member_a, "a", capabilities=[]), route(member_b, "b")
    pool_a.pool = pool_b.pool = "pool:p"
    assert model(pool_a, pool_b).bind_tools([add]).invoke("x").content == "from b" and member_a.calls == []
    no_schema = model(route(Fake(), "a", capabilities=["tools"]))
    with pytest.raises(NoCapableModel, match="supports json_schema"):
        no_schema.with_structured_output(add, method="json_schema").invoke("x")


class Label(BaseModel):
    category: str
    urgent: bool


def test_structured_output_parses_each_method_and_types_a_bad_reply() -> None:
    call = AIMessage(
        "", tool_calls=[{"name": "Label", "args": {"category": "bug", "urgent": True}, "id": "c1"}]
    )
    fake = Fake(call, '{"category": "billing", "urgent": false}', '{"category": "x"}', "not json")
    m = model(route(fake))
    assert m.with_structured_output(Label).invoke("x") == Label(category="bug", urgent=True)
    assert fake.calls[0]["tool_choice"] == {"type": "function", "function": {"name": "Label"}}
    schema = m.with_structured_output(Label, method="json_schema")
    assert schema.invoke("x") == Label(category="billing", urgent=False)
    assert fake.calls[1]["response_format"]["json_schema"]["name"] == "Label"
    with pytest.raises(StructuredOutputInvalid, match="urgent: Field required"):
        schema.invoke("x")
    raw = m.with_structured_output(Label, method="json_mode", include_raw=True).invoke("x")
    assert raw["parsed"] is None and isinstance(raw["parsing_error"], StructuredOutputInvalid)
    assert raw["raw"].content == "not json" and fake.calls[3]["response_format"] == {"type": "json_object"}


def test_async_calls_wait_for_limiter_slots_on_the_event_loop() -> None:
    class NoBlockingClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            raise AssertionError("a blocking sleep on the event loop")

    clock = NoBlockingClock()
    limiter = DynamoDBRateLimiter(
        "t", "p", [Limit("rpm", 2, 60)], store=MemoryStore(), clock=clock, max_wait_s=60
    )
    fake = Fake("one", "two", "three")
    m = model(route(fake, limiter=limiter), clock=clock)
    start = clock.now()

    async def run() -> list[Any]:
        return await m.abatch(["a", "b", "c"], config={"max_concurrency": 1})

    replies = asyncio.run(run())
    assert [r.content for r in replies] == ["one", "two", "three"]
    assert clock.now() - start >= 29  # the third waited for its slot (2 per minute), on the event loop


def test_astream_and_stream_yield_the_providers_chunks() -> None:
    fake = Fake(["a ", "b ", "c"], ["x", "y"])
    m = model(route(fake))
    assert [c.content for c in m.stream("hi") if c.content] == ["a ", "b ", "c"]

    async def collect() -> list[str]:
        return [str(c.content) async for c in m.astream("hi")]

    assert "".join(asyncio.run(collect())) == "xy"


def test_a_stream_retries_before_its_first_chunk_and_never_after() -> None:
    before = Fake(http_error(502), ["fine"])
    assert "".join(str(c.content) for c in model(route(before)).stream("x")) == "fine"
    assert len(before.calls) == 2
    after = Fake(["half ", http_error(502)], ["never"])
    with pytest.raises(StreamInterrupted, match="broke after its first chunks"):
        list(model(route(after)).stream("x"))
    assert len(after.calls) == 1


def test_each_http_attempt_takes_one_slot_and_one_budget_reservation_on_every_path() -> None:
    from stepgraph.limiter import BudgetGuard

    clock = FakeClock()
    counts = {"slots": 0, "reserved": 0, "reconciled": 0}

    class Counting(DynamoDBRateLimiter):
        def try_acquire(self, *args: Any, **kwargs: Any) -> Any:
            counts["slots"] += 1
            return super().try_acquire(*args, **kwargs)

    class Guard(BudgetGuard):
        def reserve(self, estimated_usd: float) -> Any:
            counts["reserved"] += 1
            return super().reserve(estimated_usd)

        def reconcile(self, reservation: Any, actual_usd: float) -> None:
            counts["reconciled"] += 1
            super().reconcile(reservation, actual_usd)

    limiter = Counting("t", "p", [Limit("rpm", 100, 60)], store=MemoryStore(), clock=clock)
    guard = Guard("t", "acct", daily_cap_usd=10.0, store=MemoryStore(), clock=clock)
    fake = Fake(http_error(502), "a", http_error(502), ["b"], http_error(502), "c", http_error(502), ["d"])
    spec = ModelSpec(free=False, usd_per_prompt_token=1e-6)
    paid = Route("p", "m", spec, KeyRing("p", [("main", "sk")]), lambda key: fake, limiter)
    m = RoutedChatModel(
        router=ModelRouter([paid], clock=clock, remaining_s=lambda: 60, budget_guard=guard, base_delay_s=0)
    )

    async def both_async() -> str:
        first = await m.ainvoke("x")
        return str(first.content) + "".join([str(c.content) async for c in m.astream("x")])

    assert m.invoke("x").content == "a" and "".join(str(c.content) for c in m.stream("x")) == "b"
    assert asyncio.run(both_async()) == "cd"
    assert len(fake.calls) == 8  # four calls, each retried once after a 502
    assert counts == {"slots": 8, "reserved": 8, "reconciled": 8}
