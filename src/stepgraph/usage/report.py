"""Run athena/*.sql on DuckDB over usage JSONL in a directory or an S3 bucket (AWS or moto).

The SQL is the very same text Athena runs: placeholders filled, then transpiled Athena → DuckDB by
sqlglot. The table is built with the record model's columns, and `dt` comes from the object path.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.usage import sql as usage_sql
from stepgraph.usage.check import UsageDataError, drop_bad_lines, find_bad_line
from stepgraph.usage.duck import Limits, attach_s3, connect
from stepgraph.usage.record import glue_columns
from stepgraph.usage.render import render as render  # the report's callers import it from here

DUCK_TYPES = {
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "string": "VARCHAR",
}
Rows = list[dict[str, Any]]
FILES_PER_BATCH = 2000


def _usage_root(source: Path) -> Path:
    """Accept the root that holds usage/ or the usage/ prefix itself."""
    return source / "usage" if (source / "usage").is_dir() else source


def _s3_usage_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    if not prefix.endswith(resources.PREFIX_USAGE):
        prefix += resources.PREFIX_USAGE
    return bucket, prefix


@dataclass(frozen=True)
class Layout:
    """Where one source keeps raw JSONL and compacted Parquet: local paths or s3:// globs."""

    raw: list[str]
    compacted: list[str]
    local: bool
    label: Callable[[Path], str] = str  # how an error names a local file

    @classmethod
    def of_dir(
        cls, root: Path, *, raw_root: Path | None = None, label: Callable[[Path], str] = str
    ) -> Layout:
        usage = _usage_root(root)
        src = raw_root or usage
        raw = sorted(str(p) for p in src.rglob("*.jsonl*") if p.suffix in (".jsonl", ".gz"))
        sibling = usage.parent / resources.PREFIX_USAGE_COMPACTED
        compacted = sorted(str(p) for p in sibling.glob("dt=*/*.parquet")) if sibling.is_dir() else []
        return cls(raw, compacted, local=True, label=label)

    @classmethod
    def of_s3(cls, uri: str) -> Layout:
        bucket, prefix = _s3_usage_prefix(uri)
        base = f"s3://{bucket}/{prefix}dt=*/*/*"
        root = prefix[: -len(resources.PREFIX_USAGE)]
        return cls(
            [base + ".jsonl*"],  # one listing finds both .jsonl and .jsonl.gz (_expand keeps only those)
            [f"s3://{bucket}/{root}{resources.PREFIX_USAGE_COMPACTED}dt=*/*.parquet"],
            local=False,
        )


def _expand(con: Any, globs: list[str]) -> list[str]:
    """Every usage object an s3:// glob matches (one paginated listing each; nothing read)."""
    found = (f for g in globs for (f,) in con.execute("SELECT file FROM glob(?)", [g]).fetchall())
    return sorted(f for f in found if f.endswith((".jsonl", ".jsonl.gz")))


def _present(con: Any, paths: list[str], local: bool) -> list[str]:
    if local:
        return paths
    # Each glob is one paginated listing; a glob that matches nothing would make read_json fail.
    return [g for g in paths if con.execute("SELECT count(*) FROM glob(?)", [g]).fetchone()[0]]


def _day_of_path(path: str) -> str:
    m = re.search(r"dt=(\d{4}-\d{2}-\d{2})/", path)
    return m.group(1) if m else ""


def _days(con: Any, compacted: list[str]) -> set[str]:
    """The days that compacted Parquet holds (from the object paths: one listing, nothing read)."""
    days: set[str] = set()
    for pattern in compacted:
        for (name,) in con.execute("SELECT file FROM glob(?)", [pattern]).fetchall():
            days.add(_day_of_path(name))
    return days - {""}


def columns_sql() -> str:
    return "{" + ", ".join(f"'{n}': '{DUCK_TYPES[t]}'" for n, t in glue_columns()) + "}"


def load(
    con: Any,
    layout: Layout,
    *,
    database: str,
    table: str = resources.USAGE_TABLE,
    label: Callable[[Path], str] = str,
    fetch: Callable[[list[str]], list[Path]] | None = None,
) -> int:
    """Create the raw table, the compacted table and the view the queries read; returns the view's row count.

    A bad line raises `UsageDataError` naming the object (`label(path)` for local files) and line."""
    import duckdb

    cols = glue_columns()
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
    compacted = _present(con, layout.compacted, layout.local)
    # Raw objects of a compacted day wait for lifecycle to expire them: skip them unread (DuckDB prunes
    # files by the dt in their path), the view would drop their rows anyway.
    done_days = {_day_of_path(f) for f in compacted} - {""} if layout.local else _days(con, compacted)
    raw = layout.raw if layout.local else _expand(con, layout.raw)
    raw = [f for f in raw if _day_of_path(f) not in done_days]
    empty = ", ".join(f'"{n}" {DUCK_TYPES[t]}' for n, t in cols) + ", dt VARCHAR"
    con.execute(f'CREATE OR REPLACE TABLE "{database}"."{table}" ({empty})')
    # In batches: one read_json over 100,000 files peaks at twice the memory of 2,000-file batches, and
    # that peak grows with the file count; batched it stays flat.
    for i in range(0, len(raw), FILES_PER_BATCH):
        batch = raw[i : i + FILES_PER_BATCH]
        try:
            con.execute(
                f'INSERT INTO "{database}"."{table}" SELECT * FROM read_json(?, '
                f"format='newline_delimited', columns={columns_sql()}, hive_partitioning=true, "
                "hive_types={'dt': 'VARCHAR'}, union_by_name=true)",
                [batch],
            )
        except duckdb.Error as exc:
            raise _bad_data(batch, label, str(exc), layout.local, fetch) from None
    if raw:
        # Athena loads such records too (as NULLs); the report would silently mis-date them.
        no_ts = con.execute(
            f'SELECT count(*) FROM "{database}"."{table}" WHERE ts IS NULL OR ts = \'\''
        ).fetchone()
        if no_ts and no_ts[0]:
            raise _bad_data(raw, label, f"{no_ts[0]} records without ts", layout.local, fetch)
    compacted_table = resources.USAGE_COMPACTED_TABLE
    if compacted:
        con.execute(
            f'CREATE OR REPLACE TABLE "{database}"."{compacted_table}" AS SELECT * FROM read_parquet(?, '
            "hive_partitioning=true, hive_types={'dt': 'VARCHAR'})",
            [compacted],
        )
    else:
        con.execute(f'CREATE OR REPLACE TABLE "{database}"."{compacted_table}" ({empty})')
    view = usage_sql.fill(
        usage_sql.ddl("create_usage_all_view"),
        database=database,
        table=table,
        compacted=compacted_table,
        all=resources.USAGE_ALL_VIEW,
    )
    con.execute(to_duckdb(view))
    return int(con.execute(f'SELECT count(*) FROM "{database}"."{resources.USAGE_ALL_VIEW}"').fetchone()[0])


def _bad_data(
    files: list[str],
    label: Callable[[Path], str],
    detail: str,
    local: bool,
    fetch: Callable[[list[str]], list[Path]] | None = None,
) -> UsageDataError:
    """Name the first bad object and line. S3 objects are only fetched here, once DuckDB refused them."""
    if local:
        found = find_bad_line([Path(f) for f in files], label)
    elif fetch is not None:
        copies = fetch(files)
        uri = dict(zip(copies, files, strict=True))
        found = find_bad_line(copies, lambda p: uri[p])
    else:
        found = None
    if found is not None:
        return found
    for f in files:  # DuckDB names the local copy; name the object instead
        detail = detail.replace(f, label(Path(f)))
    return UsageDataError(f"usage objects cannot be read: {detail.splitlines()[0]}")


def _fetcher(s3_client: Any, dest: Path) -> Callable[[list[str]], list[Path]]:
    def fetch(uris: list[str]) -> list[Path]:
        out = []
        for n, uri in enumerate(uris):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            target = dest / f"{n}-{key.rsplit('/', 1)[-1]}"  # keeps .gz, so gzip is checked as such
            s3_client.download_file(bucket, key, str(target))
            out.append(target)
        return out

    return fetch


def _layout(
    con: Any, source: str, tmp: Path, s3_client: Any, skipped: list[str] | None
) -> tuple[Layout, Callable[[list[str]], list[Path]] | None]:
    if source.startswith("s3://"):
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        if skipped is None:
            attach_s3(con, s3_client)
            (tmp / "bad").mkdir()
            return Layout.of_s3(source), _fetcher(s3_client, tmp / "bad")
        root = download_s3(source, tmp / "s3", s3_client)
        bucket, _ = _s3_usage_prefix(source)
        # Name the object, not its temporary local copy (the copy keeps the key under tmp/s3).
        label: Callable[[Path], str] = lambda p: f"s3://{bucket}/{p.relative_to(tmp / 's3').as_posix()}"  # noqa: E731
    else:
        root = Path(source)
        if not root.is_dir():
            raise ConfigError(
                f"usage source {source} is not a directory", hint="pass a directory or s3://bucket"
            )
        label = str
    raw_root = _usage_root(root)
    if skipped is not None:
        cleaned, problems = drop_bad_lines(raw_root, tmp / "clean", label)
        skipped.extend(problems)
        if cleaned != raw_root:  # errors still name the object, not the cleaned copy
            named, original = label, raw_root
            label = lambda p: named(original / p.relative_to(cleaned))  # noqa: E731
            return Layout.of_dir(root, raw_root=cleaned, label=label), None
    return Layout.of_dir(root, label=label), None


def download_s3(uri: str, dest: Path, client: Any) -> Path:
    """Copy the usage objects of `s3://bucket[/prefix]`, raw and compacted, to `dest`, keeping the keys."""
    bucket, prefix = _s3_usage_prefix(uri)
    root = prefix[: -len(resources.PREFIX_USAGE)]
    paginator = client.get_paginator("list_objects_v2")
    for sub in (prefix, root + resources.PREFIX_USAGE_COMPACTED):
        for page in paginator.paginate(Bucket=bucket, Prefix=sub):
            for obj in page.get("Contents", []):
                target = dest / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, obj["Key"], str(target))
    return dest / root if root else dest


def to_duckdb(athena_sql: str) -> str:
    import sqlglot

    return sqlglot.transpile(athena_sql, read="athena", write="duckdb")[0]


def run_report(
    source: str,
    *,
    queries: list[str] | None = None,
    since: date | None = None,
    s3_client: Any = None,
    extra: dict[str, str] | None = None,
    limits: Limits | None = None,
    skipped: list[str] | None = None,
) -> dict[str, Rows]:
    """Run the named queries (all by default), plus `extra` ad-hoc SQL, over `source` (a directory or
    s3://bucket). S3 is read in place through DuckDB's httpfs (globs, nothing downloaded first), with the
    memory bounds of `stepgraph.usage.duck`; tables and spills live in a temporary directory.

    With `skipped` (a list), corrupt lines are left out and each is appended to it (object and line)
    instead of stopping the report (on S3 that reads every line here, so the objects are downloaded)."""
    available = usage_sql.named_queries()
    unknown = sorted(set(queries or []) - set(available))
    if unknown:
        raise ConfigError(f"unknown query {', '.join(unknown)}", hint=f"known: {', '.join(available)}")
    database = resources.GLUE_DATABASE
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(Path(tmp), limits=limits)
        try:
            layout, fetch = _layout(con, source, Path(tmp), s3_client, skipped)
            load(con, layout, database=database, label=layout.label, fetch=fetch)
            results: dict[str, Rows] = {}
            todo = {name: available[name] for name in queries or list(available)} | (extra or {})
            for name, query in todo.items():
                text = usage_sql.fill(
                    query, database=database, table=resources.USAGE_ALL_VIEW, since=str(since or "1970-01-01")
                )
                cur = con.execute(to_duckdb(text))
                names = [d[0] for d in cur.description]
                results[name] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            return results
        finally:
            con.close()
