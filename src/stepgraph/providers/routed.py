"""`RoutedChatModel`: the router as a LangChain chat model, the one a graph's node is handed.

A `BaseChatModel`, so everything LangChain and LangGraph build on chat models works with it: `bind_tools`
(with `tool_choice` and `parallel_tool_calls`), `with_structured_output`, `invoke/ainvoke/stream/astream/
batch/abatch`, `create_react_agent`, `ToolNode`. Each call goes through the `ModelRouter` with every
keyword it was given; the router's attempts (one per HTTP attempt, each through the limiter, the budget
guard and the usage callback) report to stepgraph's usage callback only, so a user's callbacks (a tracer,
LangGraph's message stream) see each call once, with its final reply, as for any chat model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from stepgraph.providers.router import ModelRouter

StructuredMethod = Literal["function_calling", "json_schema", "json_mode"]


class StructuredOutputInvalid(OutputParserException):
    """The model's reply is not a valid instance of the requested schema (not JSON, no tool call, or
    fields that do not validate). `raw` is the reply, `schema` the schema's name."""

    def __init__(self, schema: str, detail: str, raw: BaseMessage) -> None:
        self.schema, self.raw = schema, raw
        text = raw.content if isinstance(raw.content, str) else json.dumps(raw.content)
        super().__init__(
            f"the reply is not a valid {schema}: {detail}",
            observation=detail,
            llm_output=text[:2000],
            send_to_llm=True,
        )


class RoutedChatModel(BaseChatModel):
    """The routed, rate-limited, metered chat model (`build_chat_model` returns one).

    Example:
        >>> model = build_chat_model(table, limiter_factory=..., callbacks=[UsageCallbackHandler(ledger)])
        >>> model.bind_tools([lookup_order]).invoke("Where is order 42?").tool_calls
        >>> model.with_structured_output(Label).invoke("Classify: my parcel is late").category
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: ModelRouter
    role: str = "default"
    # LangChain's standard parameters: sent with every call unless the call sets its own.
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    timeout: float | None = Field(
        default=None, description="Seconds one HTTP attempt may take (capped by the step's time)"
    )
    max_retries: int | None = Field(
        default=None, ge=0, description="Transient failures retried per deployment (the router's)"
    )
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        description="Not used: every deployment's keys come from the provider table",
    )
    streaming: bool = Field(
        default=False, description="invoke() streams from the provider (the reply is the same)"
    )

    @model_validator(mode="after")
    def _retries_to_router(self) -> RoutedChatModel:
        if self.max_retries is not None:
            self.router.retries = self.max_retries
        return self

    @property
    def _llm_type(self) -> str:
        return "stepgraph-routed"

    @property
    def routes(self) -> list[Any]:
        return self.router.routes

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"role": self.role, "chain": [r.deployment for r in self.router.routes]}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "stepgraph"
        first = self.router.routes[0].model if self.router.routes else "none"
        params["ls_model_name"] = kwargs.get("model") or first
        if self.temperature is not None:
            params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        if self.max_tokens is not None:
            params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- calls: the router with every keyword, attempts as child runs --------------------------------
    def _inner(self, run_manager: Any, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[Any, dict]:
        defaults = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "timeout": self.timeout,
            "stop": self.stop or None,
        }
        kwargs = {**{k: v for k, v in defaults.items() if v is not None}, **kwargs}
        # The attempts report to stepgraph's own callbacks (the usage records, one per HTTP attempt) with
        # this call's metadata; the caller's callbacks see this call once, as LangChain's contract says.
        async_run = isinstance(run_manager, AsyncCallbackManagerForLLMRun)
        quiet = AsyncCallbackManager(handlers=[]) if async_run else CallbackManager(handlers=[])
        metadata = dict(run_manager.metadata or {}) if run_manager is not None else {}
        config: dict[str, Any] = {"callbacks": quiet, "metadata": metadata}
        if stop:
            kwargs = {**kwargs, "stop": stop}
        return config, kwargs

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config, kwargs = self._inner(run_manager, stop, kwargs)
        return _result(self.router.invoke(messages, config, **kwargs))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config, kwargs = self._inner(run_manager, stop, kwargs)
        return _result(await self.router.ainvoke(messages, config, **kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        config, kwargs = self._inner(run_manager, stop, kwargs)
        for chunk in self.router.stream(messages, config, **kwargs):
            yield ChatGenerationChunk(message=_chunk(chunk))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        config, kwargs = self._inner(run_manager, stop, kwargs)
        async for chunk in self.router.astream(messages, config, **kwargs):
            yield ChatGenerationChunk(message=_chunk(chunk))

    # -- tools and structured output ------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | BaseTool],
        *,
        tool_choice: dict | str | bool | None = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools in OpenAI's format; `tool_choice` a tool's name, `auto`, `none`, `any`/`required`/True
        (some tool must be called) or an OpenAI tool-choice dict; `parallel_tool_calls=False` asks for one."""
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = _tool_choice(tool_choice, formatted)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(  # type: ignore[override]
        self,
        schema: dict[str, Any] | type,
        *,
        method: StructuredMethod = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Replies parsed into `schema` (a pydantic class, a TypedDict, or a JSON schema dict): through a
        forced tool call (`function_calling`), the provider's `json_schema` response format, or JSON mode.
        A reply that does not parse raises `StructuredOutputInvalid` (or, with `include_raw`, is returned
        as `{"raw", "parsed": None, "parsing_error"}`)."""
        if kwargs:
            raise ValueError(f"unexpected arguments: {sorted(kwargs)}")
        tool = convert_to_openai_tool(schema, strict=strict)
        name = tool["function"]["name"]
        fmt = {"kwargs": {"method": method}, "schema": tool}
        if method == "function_calling":
            llm: Runnable = self.bind_tools(
                [schema],
                tool_choice=name,
                parallel_tool_calls=False,
                strict=strict,
                ls_structured_output_format=fmt,
            )
        elif method == "json_schema":
            json_schema = {"name": name, "schema": convert_to_json_schema(schema)}
            if strict is not None:
                json_schema["strict"] = strict
            llm = self.bind(
                response_format={"type": "json_schema", "json_schema": json_schema},
                ls_structured_output_format=fmt,
            )
        elif method == "json_mode":
            llm = self.bind(response_format={"type": "json_object"}, ls_structured_output_format=fmt)
        else:
            raise ValueError(f"method must be function_calling, json_schema or json_mode, not {method!r}")
        parser = RunnableLambda(lambda message: parse_structured(message, schema, name, method))
        if not include_raw:
            return llm | parser

        def parsed_or_error(data: dict[str, Any]) -> dict[str, Any]:
            try:
                return {**data, "parsed": parser.invoke(data["raw"]), "parsing_error": None}
            except StructuredOutputInvalid as exc:
                return {**data, "parsed": None, "parsing_error": exc}

        return RunnableMap(raw=llm) | RunnablePassthrough() | RunnableLambda(parsed_or_error)


def _tool_choice(choice: dict | str | bool, tools: list[dict[str, Any]]) -> Any:
    if isinstance(choice, dict):
        return choice
    if choice is True or choice in ("any", "required"):
        return "required"
    if choice in ("auto", "none"):
        return choice
    names = [t["function"]["name"] for t in tools]
    if choice not in names:
        raise ValueError(f"tool_choice {choice!r} names no bound tool (bound: {names})")
    return {"type": "function", "function": {"name": choice}}


def parse_structured(message: Any, schema: Any, name: str, method: str) -> Any:
    """The reply as an instance of `schema` (a dict for a dict/TypedDict schema)."""
    if method == "function_calling":
        calls = [c for c in getattr(message, "tool_calls", []) or [] if c["name"] == name]
        if not calls:
            raise StructuredOutputInvalid(name, f"the reply calls no tool {name!r}", message)
        data: Any = calls[0]["args"]
    else:
        text = message.content if isinstance(message.content, str) else ""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StructuredOutputInvalid(name, f"the reply is not JSON ({exc.msg})", message) from None
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise StructuredOutputInvalid(name, detail, message) from None
    if not isinstance(data, dict):
        raise StructuredOutputInvalid(name, f"expected a JSON object, got {type(data).__name__}", message)
    from pydantic import v1

    if isinstance(schema, type) and issubclass(schema, v1.BaseModel):
        try:
            return schema.parse_obj(data)
        except v1.ValidationError as exc:
            raise StructuredOutputInvalid(name, str(exc), message) from None
    return data


def _chunk(chunk: Any) -> AIMessageChunk:
    if isinstance(chunk, AIMessageChunk):
        return chunk
    return AIMessageChunk(content=getattr(chunk, "content", str(chunk)))


def _result(message: BaseMessage) -> ChatResult:
    if not isinstance(message, AIMessage):
        message = AIMessage(content=getattr(message, "content", str(message)))
    usage = message.response_metadata.get("token_usage") if message.response_metadata else None
    return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"token_usage": usage or {}})
