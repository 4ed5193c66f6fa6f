"""The usage record is the one schema: the DDL file names no column, the CDK table and the DDL are
both filled from `UsageRecord`."""

from __future__ import annotations

import re

from stepgraph import resources
from stepgraph.usage import sql as usage_sql
from stepgraph.usage.record import UsageRecord


def test_the_ddl_file_holds_no_column_list_of_its_own() -> None:
    raw = resources.data("athena", "create_table.sql").read_text()
    assert "${columns}" in raw and not any(f"`{name}`" in raw for name in UsageRecord.model_fields)


def test_the_filled_ddl_lists_every_record_field_with_its_declared_type() -> None:
    body = usage_sql.ddl("create_table").split("PARTITIONED BY")[0]
    assert re.findall(r"`(\w+)` (\w+)", body) == usage_sql.columns()
    types = dict(usage_sql.columns())
    assert types["prompt_tokens"] == types["ttft_ms"] == "bigint"  # declared by the Count annotation
    assert types["attempt"] == "int" and types["cost_usd"] == "double" and types["fallback"] == "boolean"
