"""Run athena/*.sql on DuckDB over usage JSONL in a directory or an S3 bucket (AWS or moto).

The SQL is the very same text Athena runs: placeholders filled, then transpiled Athena → DuckDB by
sqlglot. The table is built with the record model's columns, and `dt` comes from the object path.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError
from stepgraph.usage import layout
from stepgraph.usage import sql as usage_sql
from stepgraph.usage.check import UsageDataError, drop_bad_lines, find_bad_line
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


def _usage_root(source: Path) -> Path:
    """Accept the root that holds usage/ or the usage/ prefix itself."""
    return source / "usage" if (source / "usage").is_dir() else source


def _s3_usage_prefix(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    if not prefix.endswith(resources.PREFIX_USAGE):
        prefix += resources.PREFIX_USAGE
    return bucket, prefix


def download_s3(uri: str, dest: Path, client: Any) -> Path:
    """Copy every usage object of `s3://bucket[/prefix]` to `dest`, keeping the keys."""
    bucket, prefix = _s3_usage_prefix(uri)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, obj["Key"], str(target))
    return dest


def load(con: Any, usage_root: Path, *, database: str, table: str, label: Callable[[Path], str] = str) -> int:
    """Create `database.table` from the JSONL files under `usage_root`; returns the row count.

    A bad line raises `UsageDataError` naming the object (`label(path)`: its S3 URI or file) and line."""
    import duckdb

    cols = glue_columns()
    columns = "{" + ", ".join(f"'{n}': '{DUCK_TYPES[t]}'" for n, t in cols) + "}"
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
    files = [str(p) for p in layout.local_files(usage_root)]
    if files:
        try:
            con.execute(
                f'CREATE OR REPLACE TABLE "{database}"."{table}" AS SELECT * FROM read_json(?, format=\'newline_delimited\', '
                f"columns={columns}, hive_partitioning=true, hive_types={{'dt': 'VARCHAR'}}, union_by_name=true)",
                [files],
            )
        except duckdb.Error as exc:
            raise _bad_data(files, label, str(exc)) from None
        # Athena loads such records too (as NULLs); the report would silently mis-date them.
        no_ts = con.execute(
            f'SELECT count(*) FROM "{database}"."{table}" WHERE ts IS NULL OR ts = \'\''
        ).fetchone()
        if no_ts and no_ts[0]:
            raise _bad_data(files, label, f"{no_ts[0]} records without ts")
    else:
        body = ", ".join(f'"{n}" {DUCK_TYPES[t]}' for n, t in cols)
        con.execute(f'CREATE OR REPLACE TABLE "{database}"."{table}" ({body}, dt VARCHAR)')
    return int(con.execute(f'SELECT count(*) FROM "{database}"."{table}"').fetchone()[0])


def _bad_data(files: list[str], label: Callable[[Path], str], detail: str) -> UsageDataError:
    found = find_bad_line([Path(f) for f in files], label)
    if found is not None:
        return found
    for f in files:  # DuckDB names the local copy; name the object instead
        detail = detail.replace(f, label(Path(f)))
    return UsageDataError(f"usage objects cannot be read: {detail.splitlines()[0]}")


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
    skipped: list[str] | None = None,
) -> dict[str, Rows]:
    """Run the named queries (all by default), plus `extra` ad-hoc SQL, over `source` (a directory or s3://bucket).

    With `skipped` (a list), corrupt lines are left out and each is appended to it (object and line)
    instead of stopping the report."""
    import duckdb

    available = usage_sql.named_queries()
    unknown = sorted(set(queries or []) - set(available))
    if unknown:
        raise ConfigError(f"unknown query {', '.join(unknown)}", hint=f"known: {', '.join(available)}")
    database, table = resources.GLUE_DATABASE, resources.USAGE_TABLE
    with tempfile.TemporaryDirectory() as tmp:
        if source.startswith("s3://"):
            if s3_client is None:
                import boto3

                s3_client = boto3.client("s3")
            root = download_s3(source, Path(tmp), s3_client)
            bucket, prefix = _s3_usage_prefix(source)
            # Name the object, not its temporary local copy.
            label: Callable[[Path], str] = lambda p: f"s3://{bucket}/{prefix}{p.relative_to(root).as_posix()}"  # noqa: E731
        else:
            path = Path(source)
            if not path.is_dir():
                raise ConfigError(
                    f"usage source {source} is not a directory", hint="pass a directory or s3://bucket"
                )
            root = _usage_root(path)
            label = str
        if skipped is not None:
            original, named = root, label
            root, problems = drop_bad_lines(original, Path(tmp) / "clean", named)
            skipped.extend(problems)
            if root != original:  # errors still name the object, not the cleaned copy
                clean = root
                label = lambda p: named(original / p.relative_to(clean))  # noqa: E731
        con = duckdb.connect()
        load(con, root, database=database, table=table, label=label)
        results: dict[str, Rows] = {}
        todo = {name: available[name] for name in queries or list(available)} | (extra or {})
        for name, query in todo.items():
            text = usage_sql.fill(query, database=database, table=table, since=str(since or "1970-01-01"))
            cur = con.execute(to_duckdb(text))
            names = [d[0] for d in cur.description]
            results[name] = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        return results
