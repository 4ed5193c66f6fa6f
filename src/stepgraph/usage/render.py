"""The report's rows as a terminal table, one JSON document, or CSV.

Tables fit the terminal: identifying columns (model, provider, thread, ...) are never cut; the others
wrap, and when even that does not fit, each row is printed as a block of `column: value` lines.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

from stepgraph.errors import ConfigError

Rows = list[dict[str, Any]]
# Columns whose values name something: cutting them would change what a row says.
KEEP_WHOLE = ("model", "provider", "thread_id", "graph", "node", "status", "dt", "minute", "key_label")
MIN_WRAPPED = 6  # narrowest a wrapped column may get


def cell(v: Any) -> str:
    """Floats at full precision (costs of a fraction of a cent must not round to 0), no float noise."""
    if isinstance(v, float):
        return f"{v:.12g}"
    return "" if v is None else str(v)


def render(results: dict[str, Rows], fmt: str = "table", *, width: int | None = None) -> str:
    """`json`: one document `{"queries": {name: rows}}`; `csv`: one query; `table`: for a terminal."""
    if fmt == "json":
        return json.dumps({"queries": results}, default=str, indent=2)
    if fmt == "csv":
        if len(results) != 1:
            raise ConfigError(
                f"--format csv writes one query, not {len(results)}",
                hint="name it with -q, or pass --out-dir DIR for one CSV file per query",
            )
        return csv_text(next(iter(results.values())))
    if fmt != "table":
        raise ConfigError(f"unknown format {fmt!r}", hint="use table, json or csv")
    width = width or shutil.get_terminal_size((100, 24)).columns
    return "\n".join(table(q, rows, width) for q, rows in results.items())


def csv_text(rows: Rows) -> str:
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: cell(v) for k, v in r.items()} for r in rows)
    return out.getvalue()


def write_csv_files(results: dict[str, Rows], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for q, rows in results.items():
        path = out_dir / f"{q}.csv"
        path.write_text(csv_text(rows))
        paths.append(path)
    return paths


def table(title: str, rows: Rows, width: int) -> str:
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=width, file=io.StringIO())
    if not rows:
        console.print(f"{title}: (no rows)")
        return console.export_text()
    cols = list(rows[0])
    text = [[cell(r.get(c)) for c in cols] for r in rows]
    natural = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    whole = [c in KEEP_WHOLE or c.startswith("model") for c in cols]
    borders = 3 * len(cols) + 1
    squeezed = sum(n if keep else min(n, MIN_WRAPPED) for n, keep in zip(natural, whole, strict=True))
    if squeezed + borders > width:  # even wrapped it does not fit: one block per row
        label = max(len(c) for c in cols)
        console.print(f"{title} ({len(rows)} rows)")
        for i, values in enumerate(text):
            console.print(f"-- row {i + 1}", highlight=False)
            for c, v in zip(cols, values, strict=True):
                console.print(f"  {c.ljust(label)}  {v}", highlight=False, markup=False, soft_wrap=True)
        return console.export_text()
    t = Table(title=title, title_justify="left")
    for c, n, keep in zip(cols, natural, whole, strict=True):
        if keep:
            t.add_column(c, no_wrap=True, min_width=n)
        else:
            t.add_column(c, overflow="fold", min_width=min(n, MIN_WRAPPED))
    for row in text:
        t.add_row(*row)
    console.print(t)
    return console.export_text()
