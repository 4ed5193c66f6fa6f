"""Model roles, graph settings and structured results: the shapes and checks, without AWS or a provider."""

from __future__ import annotations

import json
from typing import Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage, messages_from_dict
from pydantic import BaseModel, ValidationError

from stepgraph.errors import ConfigError, InvalidInput
from stepgraph.graphs.context import StepContext, UnknownRole
from stepgraph.graphs.registry import BUILTIN_ROLES, graph_config_schema, graph_roles, load_graph
from stepgraph.providers.table import load_provider_table
from stepgraph.runtime.results import to_jsonable
from stepgraph.runtime.step import _has_async_nodes
from stepgraph.runtime.validate import check_run_config
from stepgraph.runtime.wiring import check_graph_config
from stepgraph.schemas import RunConfig


def test_models_may_map_roles_to_chains() -> None:
    config = RunConfig(models={"default": ["pool:gpt-oss-120b"], "fast": ["gpt-oss:120b"]})
    assert config.chain() == ["pool:gpt-oss-120b"] and config.chain("fast") == ["gpt-oss:120b"]
    assert config.chain("writer") is None and config.roles() == ["default", "fast"]
    plain = RunConfig(models=["gpt-oss:120b"])
    assert plain.chain() == ["gpt-oss:120b"] and plain.chain("fast") is None and plain.roles() == ["default"]
    with pytest.raises(ValidationError, match="role 'Fast!' must match"):
        RunConfig(models={"Fast!": ["x"]})
    with pytest.raises(ValidationError, match="role 'fast' has an empty model chain"):
        RunConfig(models={"fast": []})


def test_roles_and_their_models_are_checked_before_any_item_runs() -> None:
    table = load_provider_table(env={})
    ok = RunConfig(models={"default": ["gpt-oss:120b"], "fast": ["pool:gpt-oss-120b"]})
    check_run_config(ok, table, where="input.config", roles=("default", "fast"), graph="g")
    with pytest.raises(InvalidInput, match=r"^input\.config\.models: graph g has no model role 'writer'"):
        check_run_config(
            RunConfig(models={"writer": ["gpt-oss:120b"]}),
            table,
            where="input.config",
            roles=("default",),
            graph="g",
        )
    with pytest.raises(InvalidInput, match=r"^input\.config\.models\.fast\[0\]: unknown pool or provider"):
        check_run_config(RunConfig(models={"fast": ["x:y"]}), table, where="input.config")
    check_run_config(RunConfig(models={"anything": ["gpt-oss:120b"]}), table, where="c", roles=None)


def test_graph_roles_come_from_the_builtins_and_the_environment() -> None:
    assert graph_roles({})["support_agent"] == BUILTIN_ROLES["support_agent"] == ("default", "fast")
    mine = graph_roles({"STEPGRAPH_GRAPH_ROLES": '{"mine": ["writer"]}'})
    assert mine["mine"] == ("default", "writer")
    with pytest.raises(ConfigError, match="STEPGRAPH_GRAPH_ROLES must map graph names"):
        graph_roles({"STEPGRAPH_GRAPH_ROLES": '{"mine": "writer"}'})


def test_a_node_gets_its_roles_model_the_default_for_an_unset_role_and_a_typed_error_for_an_unknown_one() -> (
    None
):
    default, fast = object(), object()
    context = StepContext(
        model=default, models={"default": default, "fast": fast}, roles=("default", "fast", "slow")
    )
    assert context.model_for("fast") is fast and context.model_for("slow") is default
    with pytest.raises(UnknownRole, match="'writer'"):
        context.model_for("writer")
    assert StepContext(model=default).model_for("anything") is default


class Settings(TypedDict):
    audience: str


def test_graph_settings_are_checked_against_the_graphs_schema() -> None:
    assert check_graph_config({"audience": "ops"}, Settings) == {"audience": "ops"}
    assert check_graph_config({"free": 1}, None) == {"free": 1}
    with pytest.raises(InvalidInput, match=r"event\.config\.graph_config\.audience: Field required"):
        check_graph_config({}, Settings)
    assert graph_config_schema("support_agent") is not None and graph_config_schema("fanout") is None


class Verdict(BaseModel):
    score: int


def test_results_are_structured_json_that_reads_back_into_messages() -> None:
    state: dict[str, Any] = {
        "messages": [
            HumanMessage("hi"),
            AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "c1"}]),
            ToolMessage("2", tool_call_id="c1"),
        ],
        "verdict": Verdict(score=3),
        "tags": {"a"},
    }
    back = json.loads(json.dumps(state, default=to_jsonable))
    assert back["verdict"] == {"score": 3} and back["tags"] == ["a"]
    messages = messages_from_dict(back["messages"])
    assert messages == state["messages"]


def test_graphs_with_async_nodes_are_told_apart() -> None:
    sync_graph = load_graph("fanout").compile()
    assert not _has_async_nodes(sync_graph)
    from tests.fixtures.agent_graphs import build_graph

    assert _has_async_nodes(build_graph().compile())
