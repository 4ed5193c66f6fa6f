"""Report output: tables that fit the terminal without cutting a model name, one JSON document,
CSV one query at a time, costs at full precision, plots in the format their name says."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stepgraph.errors import ConfigError
from stepgraph.usage.plot import bucket_size, plot_usage
from stepgraph.usage.render import render, write_csv_files

PAID = "openai/gpt-oss-120b"
ROWS = [
    {"dt": "2026-03-01", "model": f"{PAID}:free", "graph": "document_pipeline", "node": "critique",
     "requests": 5, "prompt_tokens": 381, "completion_tokens": 253, "total_tokens": 634, "cost_usd": 0.0,
     "unpriced_attempts": 0},
    {"dt": "2026-03-01", "model": PAID, "graph": "document_pipeline", "node": "draft", "requests": 2,
     "prompt_tokens": 55, "completion_tokens": 43, "total_tokens": 98, "cost_usd": 1.234567891e-7,
     "unpriced_attempts": 0},
]  # fmt: skip


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_tables_fit_and_never_cut_a_model_name(width: int) -> None:
    text = render({"spend_by_day_model": ROWS}, "table", width=width)
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    for model in (f"{PAID}:free", PAID):
        assert any(model in line for line in text.splitlines()), text
    assert "…" not in text  # nothing cut
    assert "1.234567891e-07" in text  # a fraction of a cent is not rounded to 0


def test_json_is_one_document() -> None:
    doc = json.loads(render({"a": ROWS, "b": []}, "json"))
    assert doc == {"queries": {"a": ROWS, "b": []}}
    assert doc["queries"]["a"][1]["cost_usd"] == 1.234567891e-7


def test_csv_is_one_query_or_one_file_each(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(render({"a": ROWS}, "csv"))))
    assert [r["model"] for r in rows] == [f"{PAID}:free", PAID] and rows[1]["cost_usd"] == "1.234567891e-07"
    with pytest.raises(ConfigError, match="--format csv writes one query, not 2"):
        render({"a": ROWS, "b": ROWS}, "csv")
    paths = write_csv_files({"a": ROWS, "b": ROWS[:1]}, tmp_path)
    assert [p.name for p in paths] == ["a.csv", "b.csv"]
    assert len(list(csv.DictReader(paths[1].open()))) == 1


@pytest.mark.parametrize(
    ("span_s", "size"),
    [(40, 1), (300, 5), (1800, 30), (7200, 60), (86400, 900), (30 * 86400, 6 * 3600), (90 * 86400, 86400)],
)
def test_plot_buckets_are_sized_to_the_run(span_s: float, size: int) -> None:
    assert bucket_size(span_s)[0] == size


def plot_rows(seconds: int) -> list[dict[str, object]]:
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    return [
        {"second": (start + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S"), "provider": "openrouter",
         "requests": 1 + s % 3, "cost_usd": 1e-6}
        for s in range(seconds)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "magic"),
    [("u.png", b"\x89PNG"), ("u.svg", b"<?xml"), ("u.pdf", b"%PDF"), ("u.html", b"<!doctype html>")],
)
def test_plot_writes_the_format_its_name_says(tmp_path: Path, name: str, magic: bytes) -> None:
    out = plot_usage(plot_rows(40), tmp_path / name)
    assert out.read_bytes().startswith(magic)


def test_plot_has_a_title_axes_from_0_and_a_point_per_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to look at it
    plot_usage(plot_rows(40), tmp_path / "u.png")
    fig = figures[0]
    assert "requests and spend per provider" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert ax.get_ylim()[0] == 0
        assert len(ax.lines[0].get_xdata()) == 40  # a 40-s run: 40 points, not 1 per minute
    assert fig.axes[0].get_ylabel() == "requests / s"
