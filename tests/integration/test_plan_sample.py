"""`stepgraph plan` end to end: the sample runs through a local stack and the simulator, the forecast follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepgraph.cli import run


def test_plan_measures_a_sample_and_forecasts_the_batch(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"text": f"Ticket {i}: refund", "max_rounds": 1}) + "\n" for i in range(60))
    )
    code = run(["plan", "--items", str(items), "--graph", "fanout", "--sample", "1", "--format", "json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    report = json.loads(out)
    sample = report["sample"]
    # The fanout graph: three analysts and a synthesis per item, each one HTTP attempt.
    assert sample["items"] == 1 and sample["calls_per_item"] == 4 and sample["failed_items"] == 0
    assert sample["prompt_tokens_per_call"] > 0 and sample["item_s"] > 0 and sample["steps_per_item"] >= 1
    assert report["requests"] == 240 and report["workload"]["measured_by_sample"]
    # The default chain starts on OpenRouter's free variant: 50 a UTC day, then Ollama Cloud (no daily cap).
    assert report["free_only"]["free_requests"] == 240 and report["aws"]["free_only"]["total_usd"] > 0
    assert "running 1 sample item(s)" in err


def test_plan_live_reads_today_s_counters_from_the_stack_s_limiter_table(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, datetime

    import boto3

    from stepgraph import resources
    from stepgraph.limiter.table import ensure_limiter_table
    from stepgraph.local.stack import moto_server
    from stepgraph.providers.table import load_provider_table

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"text": f"Ticket {i}"}) + "\n" for i in range(10)))
    free = "openrouter:openai/gpt-oss-120b:free"
    args = ["plan", "--items", str(items), "--calls-per-item", "4", "--tokens-per-call", "1200"]
    args += ["--config", json.dumps({"models": [free]}), "--format", "json", "--live"]
    with moto_server() as (url, _):
        # No table there yet: one line, naming the table's absence.
        assert run([*args, "--endpoint-url", url]) == 2
        err = capfd.readouterr().err.strip()
        assert "ResourceNotFoundException" in err and len(err.splitlines()) == 1, err
        ddb = boto3.client("dynamodb", endpoint_url=url)
        ensure_limiter_table(ddb, resources.LIMITER_TABLE_NAME)
        key = load_provider_table(None, env={}).deployment(*free.split(":", 1)).limiter_key
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        ddb.put_item(
            TableName=resources.LIMITER_TABLE_NAME,
            Item={resources.LIMITER_PARTITION_KEY: {"S": f"{key}#rpd#{today}"}, "count": {"N": "45"}},
        )
        assert run([*args, "--endpoint-url", url]) == 0
    report = json.loads(capfd.readouterr().out)
    (dep,) = report["deployments"]
    assert report["live"] is True and dep["spent_today"] == 45
    # 40 requests, 5 left today: the rest waits for tomorrow's 50.
    assert report["free_only"]["free_requests"] == 40 and len(report["free_only"]["days"]) == 2
