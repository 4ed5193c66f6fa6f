"""The usage lake: a Glue database, the raw JSONL and the compacted Parquet tables (partition projection on
dt) with the view over both, an Athena workgroup and the named queries from athena/, filled by
`stepgraph.usage.sql.fill`. Columns come from the usage record (`stepgraph.usage.sql.columns`), the one
schema the DDL is filled from too."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from string import Template

from aws_cdk import Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stepgraph import resources
from stepgraph.usage import sql as usage_sql

BYTES_SCANNED_CUTOFF = 10 * 1024**3  # 10 GiB per query

PRESTO_TYPES = {
    "int": "integer",
    "bigint": "bigint",
    "double": "double",
    "boolean": "boolean",
    "string": "varchar",
}


@dataclass(frozen=True)
class _Storage:
    """How a usage table's objects are written: the raw JSONL days or the compacted Parquet ones."""

    parameters: dict[str, str]
    input_format: str
    output_format: str
    serde: str


RAW_JSONL = _Storage(
    {"classification": "json"},
    "org.apache.hadoop.mapred.TextInputFormat",
    "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "org.apache.hive.hcatalog.data.JsonSerDe",
)
PARQUET = _Storage(
    {"classification": "parquet", "parquet.compression": "ZSTD"},
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
)


class UsageLake(Construct):
    def __init__(self, scope: Construct, cid: str, *, bucket: s3.IBucket) -> None:
        super().__init__(scope, cid)
        account = Stack.of(self).account
        self.database_name = resources.GLUE_DATABASE
        db = glue.CfnDatabase(
            self, "Database", catalog_id=account, database_input={"name": self.database_name}
        )
        table = self._usage_table(
            db, "UsageTable", resources.USAGE_TABLE, bucket, resources.PREFIX_USAGE, RAW_JSONL
        )
        compacted = self._usage_table(
            db,
            "UsageCompactedTable",
            resources.USAGE_COMPACTED_TABLE,
            bucket,
            resources.PREFIX_USAGE_COMPACTED,
            PARQUET,
        )
        view = glue.CfnTable(
            self,
            "UsageAllView",
            catalog_id=account,
            database_name=self.database_name,
            table_input=_presto_view(self.database_name),
        )
        view.add_resource_dependency(table)
        view.add_resource_dependency(compacted)
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=resources.ATHENA_WORKGROUP,
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{bucket.bucket_name}/athena-results/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        for stem, text in usage_sql.named_queries().items():
            sql = usage_sql.fill(
                text,
                database=self.database_name,
                table=resources.USAGE_ALL_VIEW,  # compacted days from Parquet, the others from JSONL
                view=resources.USAGE_VIEW,
                since="1970-01-01",
            )
            query = athena.CfnNamedQuery(
                self,
                f"Query{stem.title().replace('_', '')}",
                name=f"stepgraph-{stem}",
                database=self.database_name,
                query_string=sql,
                work_group=self.workgroup.ref,
                description=sql.splitlines()[0].lstrip("- ")[:1024],
            )
            query.add_resource_dependency(self.workgroup)

    def _usage_table(
        self, db: glue.CfnDatabase, cid: str, name: str, bucket: s3.IBucket, prefix: str, storage: _Storage
    ) -> glue.CfnTable:
        """A table of the usage records under `prefix`, one partition per UTC day (`dt`, projected: no crawler)."""
        location = f"s3://{bucket.bucket_name}/{prefix}"
        table = glue.CfnTable(
            self,
            cid,
            catalog_id=Stack.of(self).account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=name,
                table_type="EXTERNAL_TABLE",
                partition_keys=[glue.CfnTable.ColumnProperty(name="dt", type="string")],
                parameters={**storage.parameters, **_projection(location)},
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in usage_sql.columns()],
                    location=location,
                    input_format=storage.input_format,
                    output_format=storage.output_format,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=storage.serde),
                ),
            ),
        )
        table.add_resource_dependency(db)
        return table


def _projection(location: str) -> dict[str, str]:
    return {
        "projection.enabled": "true",
        "projection.dt.type": "date",
        "projection.dt.format": "yyyy-MM-dd",
        "projection.dt.range": "2025-01-01,NOW",
        "projection.dt.interval": "1",
        "projection.dt.interval.unit": "DAYS",
        "storage.location.template": location + "dt=${dt}/",
    }


def view_sql(database: str) -> str:
    """The SELECT of athena/create_usage_all_view.sql, filled (the same text DuckDB runs locally)."""
    text = Template(resources.data("athena", "create_usage_all_view.sql").read_text()).safe_substitute(
        database=database,
        table=resources.USAGE_TABLE,
        compacted=resources.USAGE_COMPACTED_TABLE,
        all=resources.USAGE_ALL_VIEW,
    )
    return text.split(" AS\n", 1)[1].strip()


def _presto_view(database: str) -> glue.CfnTable.TableInputProperty:
    """An Athena view as a Glue table: the Presto view text is base64 JSON inside a comment."""
    columns = [*usage_sql.columns(), ("dt", "string")]
    spec = {
        "originalSql": view_sql(database),
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": [{"name": n, "type": PRESTO_TYPES[t]} for n, t in columns],
    }
    encoded = base64.b64encode(json.dumps(spec).encode()).decode()
    return glue.CfnTable.TableInputProperty(
        name=resources.USAGE_ALL_VIEW,
        table_type="VIRTUAL_VIEW",
        parameters={"presto_view": "true", "comment": "Presto View"},
        view_original_text=f"/* Presto View: {encoded} */",
        view_expanded_text="/* Presto View */",
        storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
            columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in columns],
            serde_info=glue.CfnTable.SerdeInfoProperty(),
        ),
    )
