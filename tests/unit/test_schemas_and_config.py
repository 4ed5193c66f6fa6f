from __future__ import annotations

import pytest

from stepgraph.config import load_settings
from stepgraph.errors import ConfigError, InvalidInput
from stepgraph.schemas import StepEvent, parse_execution_input, parse_step_event


def test_execution_input_needs_exactly_one_item_source() -> None:
    ok = parse_execution_input({"graph": "document_pipeline", "items": [{"text": "a"}]})
    assert ok.items == [{"text": "a"}]
    with pytest.raises(InvalidInput, match="exactly one of 'items'"):
        parse_execution_input({"graph": "g"})
    with pytest.raises(InvalidInput, match="exactly one of 'items'"):
        parse_execution_input({"graph": "g", "items": [], "items_s3": {"bucket": "bkt", "key": "k"}})


def test_execution_input_errors_name_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"input\.items: Input should be a valid list"):
        parse_execution_input({"graph": "g", "items": "not a list"})
    with pytest.raises(InvalidInput, match=r"input\.graph"):
        parse_execution_input({"items": []})
    with pytest.raises(InvalidInput, match=r"input\.config\.max_concurrency"):
        parse_execution_input({"graph": "g", "items": [], "config": {"max_concurrency": 0}})


def test_step_event_thread_id_and_int_item_id() -> None:
    ev = parse_step_event(
        {
            "execution_id": "arn:aws:states:us-east-1:1:execution:sm:run-1",
            "item_id": 7,
            "item": {"x": 1},
            "graph": "g",
        }
    )
    assert isinstance(ev, StepEvent)
    assert ev.item_id == "7"
    assert ev.thread_id == "run-1/7"
    with pytest.raises(InvalidInput, match="give 'item' or 'item_ref'"):
        parse_step_event({"execution_id": "e", "item_id": "1", "graph": "g"})


def test_settings_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPGRAPH_TIME_SCALE", "0")
    with pytest.raises(ConfigError, match="STEPGRAPH_TIME_SCALE: Input should be greater than 0"):
        load_settings()
    monkeypatch.setenv("STEPGRAPH_TIME_SCALE", "0.05")
    assert load_settings().time_scale == 0.05
    assert load_settings(time_scale=0.5).time_scale == 0.5


def test_the_review_deadline_defaults_to_seven_days_and_is_checked() -> None:
    from stepgraph.providers.table import load_provider_table
    from stepgraph.runtime.validate import validate_execution

    table = load_provider_table(None, env={})

    def config(extra: dict[str, object]) -> dict[str, object]:
        event = {"graph": "g", "items": [{"text": "a"}], "config": extra}
        out = validate_execution(
            event, bucket="b", s3=None, table=table, graphs={"g": "m:f"}, map_concurrency=4
        )
        return dict(out["config"])

    assert config({})["review_timeout_s"] == 7 * 86_400  # the callback task's TimeoutSecondsPath: never null
    assert config({"review_timeout_s": 60})["review_timeout_s"] == 60
    with pytest.raises(InvalidInput, match=r"input\.config\.review_timeout_s"):
        parse_execution_input({"graph": "g", "items": [], "config": {"review_timeout_s": 0}})
