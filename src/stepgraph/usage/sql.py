"""The SQL in athena/: DDL and named queries with `${...}` placeholders (plain data, no AWS, no LangChain)."""

from __future__ import annotations

from pathlib import Path
from string import Template

from stepgraph import resources


def athena_dir() -> Path:
    return resources.athena_dir()


def named_queries(root: Path | None = None) -> dict[str, str]:
    """Query name (file stem) → SQL text, sorted by name."""
    qdir = (root or athena_dir()) / "queries"
    return {p.stem: p.read_text() for p in sorted(qdir.glob("*.sql"))}


def fill(sql: str, **values: str) -> str:
    """Fill `${database}`, `${table}`, … and leave the others (e.g. Athena's own `${dt}`) alone."""
    defaults = {"view": resources.USAGE_VIEW, "since": "1970-01-01"}
    return Template(sql).safe_substitute({**defaults, **values})


def ddl(name: str, root: Path | None = None) -> str:
    return ((root or athena_dir()) / f"{name}.sql").read_text()
