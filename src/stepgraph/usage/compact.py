"""Usage lake compaction: each finished UTC day's per-attempt JSONL merged into a few Parquet objects.

One object per provider attempt is the safe write (a hard kill loses one invocation at most), but
Athena's cost and latency grow with the object count. Once a day has ended (plus `settle_s`, longer
than any Lambda can still be flushing), its raw objects not yet compacted become generation `g`:
`usage-compacted/dt=D/part-gGGG-NNNNN.parquet` (ZSTD, sorted by `ts`), then the parts are read back and
checked against the raw records (count and every `record_id`), then the raw objects are tagged for the
lifecycle rule to expire, and last `_manifest-gGGG.json` lists the sources. Every object is created
with `If-None-Match: *`, never overwritten. A second run finds every raw object in a manifest and
writes nothing; a run cut short re-creates the same generation and checks the parts already there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from stepgraph import resources
from stepgraph.errors import StepGraphError
from stepgraph.usage.duck import Limits, connect
from stepgraph.usage.lake import Lake
from stepgraph.usage.report import columns_sql

ROWS_PER_PART = 1_000_000
SETTLE_S = 3600.0


class CompactionRequest(BaseModel):
    """The compaction function's event: nothing (every finished day) or the days to (re)compact."""

    days: list[Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]] | None = None


class CompactionError(StepGraphError):
    code = "StepGraph.CompactionError"


@dataclass
class DayResult:
    day: str
    generation: int | None = None
    raw_objects: int = 0
    records: int = 0
    parts: list[str] = field(default_factory=list)
    skipped: str = ""  # why nothing was written


def finished_days(lake: Lake, now: float, settle_s: float = SETTLE_S) -> list[str]:
    """Days with raw usage objects that ended at least `settle_s` ago."""
    cutoff = datetime.fromtimestamp(now - settle_s, UTC).date() - timedelta(days=1)
    return [d for d in lake.days(resources.PREFIX_USAGE) if d <= cutoff.isoformat()]


def _compacted_sources(lake: Lake, day: str) -> tuple[int, set[str]]:
    manifests = [
        k for k in lake.keys(f"{resources.PREFIX_USAGE_COMPACTED}dt={day}/_manifest-") if k.endswith(".json")
    ]
    done: set[str] = set()
    for key in manifests:
        done.update(json.loads(lake.get(key))["sources"])
    return len(manifests), done


def _ids_digest(con: Any, relation: str) -> tuple[int, str]:
    rows = con.execute(f"SELECT record_id FROM {relation} ORDER BY record_id").fetchall()
    digest = hashlib.sha256("\n".join(r[0] or "" for r in rows).encode()).hexdigest()
    return len(rows), digest


def compact_day(
    lake: Lake, day: str, *, rows_per_part: int = ROWS_PER_PART, limits: Limits | None = None
) -> DayResult:
    generation, done = _compacted_sources(lake, day)
    raw = [
        k
        for k in lake.keys(f"{resources.PREFIX_USAGE}dt={day}/")
        if k.endswith((".jsonl", ".jsonl.gz")) and k not in done
    ]
    result = DayResult(day, raw_objects=len(raw))
    if not raw:
        result.skipped = "every raw object is compacted already"
        return result
    result.generation = generation
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "raw").mkdir()
        for n, (key, body) in enumerate(zip(raw, lake.get_many(raw), strict=True)):
            # Decompress here: the local name carries no .gz, so DuckDB reads every file alike.
            (root / "raw" / f"{n}.jsonl").write_bytes(gzip.decompress(body) if key.endswith(".gz") else body)
        con = connect(root, limits=limits)
        try:
            con.execute(
                "CREATE TABLE day AS SELECT * FROM read_json(?, format='newline_delimited', "
                f"columns={columns_sql()})",
                [str(root / "raw" / "*.jsonl")],
            )
            bad = con.execute("SELECT count(*) FROM day WHERE ts IS NULL OR ts = '' OR ts[1:10] <> ?", [day])
            if (count := bad.fetchone()[0]) > 0:
                raise CompactionError(
                    f"{count} records under usage/dt={day}/ have no ts or a ts of another day",
                    hint="run `stepgraph usage report` over that day to find the line; nothing was compacted",
                )
            records, digest = _ids_digest(con, "day")
            result.records = records
            parts = max(1, -(-records // rows_per_part))
            con.execute(
                "CREATE TABLE ordered AS SELECT *, row_number() OVER (ORDER BY ts, record_id) - 1 AS rn FROM day"
            )
            for n in range(parts):
                key = f"{resources.PREFIX_USAGE_COMPACTED}dt={day}/part-g{generation:03d}-{n:05d}.parquet"
                local = root / f"part-{n}.parquet"
                con.execute(
                    f"COPY (SELECT * EXCLUDE (rn) FROM ordered WHERE rn >= {n * rows_per_part} "
                    f"AND rn < {(n + 1) * rows_per_part} ORDER BY rn) TO '{local}' "
                    "(FORMAT parquet, COMPRESSION zstd)"
                )
                # False when a run cut short made it: the check below reads what is there, not our copy.
                lake.put_once(key, local.read_bytes())
                result.parts.append(key)
            # Verify what the lake holds, read back: the count and every record id.
            check = root / "check"
            check.mkdir()
            for n, body in enumerate(lake.get_many(result.parts)):
                (check / f"{n}.parquet").write_bytes(body)
            stored = f"read_parquet('{check / '*.parquet'}')"
            import duckdb

            try:
                held = _ids_digest(con, stored)
            except duckdb.Error:  # an object that is not Parquet at all: the same answer
                held = (-1, "")
            if held != (records, digest):
                raise CompactionError(
                    f"the Parquet objects of usage/dt={day}/ generation {generation} do not hold the raw records",
                    hint=f"delete {resources.PREFIX_USAGE_COMPACTED}dt={day}/part-g{generation:03d}-* "
                    "(left by an interrupted run over other objects) and run again; raw objects are untouched",
                )
        finally:
            con.close()
    lake.mark_compacted(raw)
    manifest = {
        "day": day,
        "generation": generation,
        "records": records,
        "record_ids_sha256": digest,
        "parts": result.parts,
        "sources": raw,
        "created": datetime.fromtimestamp(time.time(), UTC).isoformat(),
    }
    key = f"{resources.PREFIX_USAGE_COMPACTED}dt={day}/_manifest-g{generation:03d}.json"
    if not lake.put_once(key, json.dumps(manifest, indent=1).encode()):
        raise CompactionError(
            f"{key} appeared while this run compacted the day", hint="two runs overlapped; run again"
        )
    return result


def compact(
    lake: Lake,
    *,
    now: float | None = None,
    days: list[str] | None = None,
    settle_s: float = SETTLE_S,
    rows_per_part: int = ROWS_PER_PART,
) -> list[dict[str, Any]]:
    """Compact the given days, or every finished day; returns one summary per day."""
    todo = days if days is not None else finished_days(lake, time.time() if now is None else now, settle_s)
    return [asdict(compact_day(lake, d, rows_per_part=rows_per_part)) for d in todo]
