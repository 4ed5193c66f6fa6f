"""Find the first bad line among usage objects, so a report can name it.

Only run when DuckDB refuses the data or loads records without `ts`: a clean report never pays for
a Python pass over every line. The checks mirror what the report's column types need.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from stepgraph.errors import StepGraphError
from stepgraph.usage import layout
from stepgraph.usage.record import glue_columns

REQUIRED = ("ts",)  # every query groups or filters by time; the record model has no default for it
_ACCEPTS: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "bigint": (int,),
    "double": (int, float),
    "boolean": (bool,),
    "string": (str,),
}


class UsageDataError(StepGraphError):
    """A usage object holds a line the report cannot read."""


def _lines(path: Path) -> Iterable[bytes]:
    return layout.decode(path.name, path.read_bytes()).splitlines()


def line_problem(raw: bytes, columns: dict[str, str]) -> str | None:
    """Why one JSONL line cannot be a usage record, or None."""
    try:
        record: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON ({exc})"
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    missing = [f for f in REQUIRED if record.get(f) in (None, "")]
    if missing:
        return f"missing field {', '.join(missing)}"
    for name, kind in columns.items():
        value = record.get(name)
        ok = _ACCEPTS[kind]
        # bool is an int in Python, not in the table.
        if value is not None and (not isinstance(value, ok) or (bool not in ok and isinstance(value, bool))):
            return f"field {name} is {json.dumps(value)[:40]}, not {kind}"
    return None


def find_bad_line(files: Iterable[Path], label: Callable[[Path], str]) -> UsageDataError | None:
    """The first problem in `files` (in order) as an error naming the object and line."""
    columns = dict(glue_columns())
    hint = "move that object out of usage/ (or fix the line) and run the report again"
    for path in files:
        try:
            lines = _lines(path)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            return UsageDataError(f"usage object {label(path)} cannot be read ({exc})", hint=hint)
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            problem = line_problem(raw, columns)
            if problem:
                return UsageDataError(f"usage object {label(path)} line {n}: {problem}", hint=hint)
    return None


def drop_bad_lines(root: Path, dest: Path, label: Callable[[Path], str]) -> tuple[Path, list[str]]:
    """A copy of the usage files under `root` without the lines a report cannot read (at `dest`, only
    when there are any), and each dropped line as `object line N: problem`."""
    columns = dict(glue_columns())
    files = sorted(p for p in root.rglob("*.jsonl*") if p.suffix in (".jsonl", ".gz"))
    problems: list[str] = []
    kept: dict[Path, list[bytes]] = {}
    for path in files:
        try:
            lines = list(_lines(path))
        except (OSError, EOFError, zlib.error) as exc:
            problems.append(f"{label(path)}: cannot be read ({exc})")
            kept[path] = []
            continue
        good = []
        for n, raw in enumerate(lines, start=1):
            problem = line_problem(raw, columns) if raw.strip() else None
            if problem:
                problems.append(f"{label(path)} line {n}: {problem}")
            elif raw.strip():
                good.append(raw)
        if len(good) != sum(1 for raw in lines if raw.strip()):
            kept[path] = good
    if not problems:
        return root, problems
    for path in files:
        target = dest / path.relative_to(root)
        target = target.with_suffix("") if target.suffix == ".gz" else target  # written uncompressed
        target.parent.mkdir(parents=True, exist_ok=True)
        body = b"\n".join(kept[path]) + b"\n" if path in kept else b"\n".join(_lines(path)) + b"\n"
        target.write_bytes(body)
    return dest, problems
