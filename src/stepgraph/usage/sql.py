"""The SQL in athena/: DDL and named queries with `${...}` placeholders (plain data, no AWS, no LangChain).

The files ship inside the package (`stepgraph/data/athena/`) and are read with importlib.resources.
The CDK app imports this module (and, through it, only the pydantic `UsageRecord`): the table's columns
come from `columns()`, the same list the DDL's `${columns}` is filled with.
"""

from __future__ import annotations

from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from stepgraph import resources
from stepgraph.usage.record import glue_columns


def athena_dir() -> Traversable:
    return resources.data("athena")


def named_queries(root: Path | Traversable | None = None) -> dict[str, str]:
    """Query name (file stem) → SQL text, sorted by name."""
    qdir = (root or athena_dir()) / "queries"
    found = sorted((p for p in qdir.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return {p.name.removesuffix(".sql"): p.read_text() for p in found}


def fill(sql: str, **values: str) -> str:
    """Fill `${database}`, `${table}`, … and leave the others (e.g. Athena's own `${dt}`) alone."""
    defaults = {"view": resources.USAGE_VIEW, "since": "1970-01-01"}
    return Template(sql).safe_substitute({**defaults, **values})


def columns() -> list[tuple[str, str]]:
    """(name, Athena type) of every usage-record field, in record order."""
    return glue_columns()


def ddl(name: str, root: Path | Traversable | None = None) -> str:
    """The DDL file `name`, with `${columns}` filled from the usage record (other placeholders kept)."""
    body = ",\n".join(f"  `{n}` {t}" for n, t in columns())
    return Template(((root or athena_dir()) / f"{name}.sql").read_text()).safe_substitute(columns=body)
