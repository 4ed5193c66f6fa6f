"""The compacted usage table, the view the named queries read, and the daily compaction function."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import duckdb
from aws_cdk.assertions import Match, Template

from infra.usage_lake import view_sql
from stepgraph import resources
from stepgraph.usage.report import to_duckdb


def _tables(template: Template) -> dict[str, Any]:
    found = template.find_resources("AWS::Glue::Table")
    return {t["Properties"]["TableInput"]["Name"]: t["Properties"]["TableInput"] for t in found.values()}


def test_the_compacted_table_is_parquet_with_the_same_columns_and_partition_projection(
    template: Template,
) -> None:
    tables = _tables(template)
    raw, compacted = tables[resources.USAGE_TABLE], tables[resources.USAGE_COMPACTED_TABLE]
    assert compacted["StorageDescriptor"]["Columns"] == raw["StorageDescriptor"]["Columns"]
    assert compacted["PartitionKeys"] == raw["PartitionKeys"]
    assert "ParquetHiveSerDe" in compacted["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
    params = compacted["Parameters"]
    assert params["projection.enabled"] == "true" and params["projection.dt.type"] == "date"
    assert resources.PREFIX_USAGE_COMPACTED + "dt=${dt}/" in json.dumps(params["storage.location.template"])


def test_the_view_is_the_same_sql_the_local_report_runs(template: Template) -> None:
    view = _tables(template)[resources.USAGE_ALL_VIEW]
    assert view["TableType"] == "VIRTUAL_VIEW" and view["Parameters"]["presto_view"] == "true"
    encoded = re.fullmatch(r"/\* Presto View: (\S+) \*/", view["ViewOriginalText"]).group(1)
    spec = json.loads(base64.b64decode(encoded))
    assert spec["originalSql"] == view_sql(resources.GLUE_DATABASE)
    names = [c["name"] for c in spec["columns"]]
    assert names == [c["Name"] for c in view["StorageDescriptor"]["Columns"]] and names[-1] == "dt"
    # DuckDB runs the very same text over two empty tables of the columns.
    con = duckdb.connect()
    con.execute(f'CREATE SCHEMA "{resources.GLUE_DATABASE}"')
    cols = ", ".join(f'"{c["name"]}" VARCHAR' for c in spec["columns"])
    for t in (resources.USAGE_TABLE, resources.USAGE_COMPACTED_TABLE):
        con.execute(f'CREATE TABLE "{resources.GLUE_DATABASE}"."{t}" ({cols})')
    assert con.execute(to_duckdb(spec["originalSql"])).fetchall() == []
    queries = template.find_resources("AWS::Athena::NamedQuery")
    assert all(f'"{resources.USAGE_ALL_VIEW}"' in q["Properties"]["QueryString"] for q in queries.values())


def test_compaction_runs_daily_with_duckdb_and_tags_what_lifecycle_expires(template: Template) -> None:
    fns = template.find_resources(
        "AWS::Lambda::Function", {"Properties": {"Description": Match.string_like_regexp("compaction")}}
    )
    ((fid, fn),) = fns.items()
    assert fn["Properties"]["Timeout"] == 900 and len(fn["Properties"]["Layers"]) == 2
    rules = template.find_resources(
        "AWS::Events::Rule", {"Properties": {"ScheduleExpression": "cron(30 1 * * ? *)"}}
    )
    assert len(rules) == 1 and fid in json.dumps(rules)
    policies = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert "s3:PutObjectTagging" in policies
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Id": "usage-compacted-raw",
                                "Prefix": resources.PREFIX_USAGE,
                                "TagFilters": [
                                    {"Key": resources.COMPACTED_TAG[0], "Value": resources.COMPACTED_TAG[1]}
                                ],
                                "ExpirationInDays": 7,
                            }
                        )
                    ]
                )
            }
        },
    )
