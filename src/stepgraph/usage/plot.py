"""Spend and requests over time per model, as a PNG (or an HTML page embedding it)."""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from pathlib import Path
from typing import Any


def plot_usage(rows: list[dict[str, Any]], out: Path) -> Path:
    """`rows` from the `requests_per_minute`-style data: minute, model, requests, cost_usd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"x": [], "req": [], "cost": []})
    for r in sorted(rows, key=lambda r: (str(r["model"]), str(r["minute"]))):
        s = series[str(r["model"])]
        s["x"].append(r["minute"])  # type: ignore[arg-type]
        s["req"].append(float(r["requests"]))
        s["cost"].append(float(r["cost_usd"] or 0))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for model, s in series.items():
        ax1.plot(s["x"], s["req"], marker="o", label=model)
        ax2.plot(s["x"], s["cost"], marker="o", label=model)
    ax1.set_ylabel("requests / minute")
    ax2.set_ylabel("spend USD / minute")
    ax1.legend(fontsize="small")
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    if out.suffix == ".html":
        img = base64.b64encode(buf.getvalue()).decode()
        out.write_text(
            f"<html><body><h1>stepgraph usage</h1><img src='data:image/png;base64,{img}'/></body></html>"
        )
    else:
        out.write_bytes(buf.getvalue())
    return out


PLOT_SQL = """
SELECT substr(ts, 1, 16) AS minute, coalesce(nullif(model_used, ''), model_requested) AS model,
       count(*) AS requests, sum(coalesce(cost_usd, 0e0)) AS cost_usd
FROM "${database}"."${table}" WHERE dt >= '${since}' GROUP BY 1, 2 ORDER BY 1, 2
"""
