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
