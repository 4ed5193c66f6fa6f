"""Requests and spend per provider over time, in the format the file name says (.png, .svg, .pdf, or
.html embedding the SVG). Buckets are sized to the run: seconds for a short local run, minutes or
hours for long ones, so a plot always has enough points to read."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

# Bucket sizes in seconds, and how the axis names them.
BUCKETS = ((1, "s"), (5, "5 s"), (10, "10 s"), (30, "30 s"), (60, "min"), (300, "5 min"), (900, "15 min"),
           (3600, "h"), (6 * 3600, "6 h"), (86400, "day"))  # fmt: skip
MAX_POINTS = 120


def _when(ts: Any) -> datetime:
    return ts if isinstance(ts, datetime) else datetime.fromisoformat(str(ts).replace("Z", "+00:00"))


def bucket_size(span_s: float) -> tuple[int, str]:
    """The smallest bucket that keeps the run within MAX_POINTS points."""
    for size, name in BUCKETS:
        if span_s / size <= MAX_POINTS:
            return size, name
    return BUCKETS[-1]


def plot_usage(rows: list[dict[str, Any]], out: Path, *, title: str = "stepgraph usage") -> Path:
    """`rows` from PLOT_SQL: second, provider, requests, cost_usd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = [_when(r["second"]) for r in rows]
    span = (max(times) - min(times)).total_seconds() if times else 0.0
    size, name = bucket_size(span)
    series: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for when, r in zip(times, rows, strict=True):
        start = when.timestamp() // size * size
        point = series[str(r["provider"])][start]
        point[0] += float(r["requests"])
        point[1] += float(r["cost_usd"] or 0)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for provider, points in sorted(series.items()):
        xs = sorted(points)
        dates = [datetime.fromtimestamp(x, tz=times[0].tzinfo) for x in xs]
        ax1.plot(dates, [points[x][0] for x in xs], marker="o", label=provider)
        ax2.plot(dates, [points[x][1] for x in xs], marker="o", label=provider)
    ax1.set_ylabel(f"requests / {name}")
    ax2.set_ylabel(f"spend USD / {name}")
    ax2.set_xlabel("time (UTC)")
    for ax in (ax1, ax2):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    ax2.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if span < 86400 else "%m-%d %H:%M"))
    if series:
        ax1.legend(fontsize="small")
    first = min(times).strftime("%Y-%m-%d %H:%M:%S UTC") if times else "no records"
    fig.suptitle(f"{title}: requests and spend per provider ({first}, {span:.0f} s, one point per {name})")
    fig.autofmt_xdate()
    suffix = out.suffix.lower()
    if suffix == ".html":
        import io

        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        out.write_text(
            f"<!doctype html><html><head><title>{title}</title></head><body>{buf.getvalue()}</body></html>"
        )
    else:
        fig.savefig(out, format=suffix.lstrip(".") or "png", dpi=100)
    plt.close(fig)
    return out


PLOT_SQL = """
SELECT substr(ts, 1, 19) AS second, coalesce(nullif(provider, ''), 'unknown') AS provider,
       count(*) AS requests, sum(coalesce(cost_usd, 0e0)) AS cost_usd
FROM "${database}"."${table}" WHERE dt >= '${since}' GROUP BY 1, 2 ORDER BY 1, 2
"""
