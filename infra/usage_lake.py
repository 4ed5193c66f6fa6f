"""The usage lake: Glue database and table (partition projection on dt), an Athena workgroup and the
named queries from athena/, filled by `stepgraph.usage.sql.fill`. Columns come from the usage record
(`stepgraph.usage.sql.columns`), the one schema the DDL is filled from too."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stepgraph import resources
from stepgraph.usage import sql as usage_sql

BYTES_SCANNED_CUTOFF = 10 * 1024**3  # 10 GiB per query


class UsageLake(Construct):
    def __init__(self, scope: Construct, cid: str, *, bucket: s3.IBucket) -> None:
        super().__init__(scope, cid)
        account = Stack.of(self).account
        self.database_name = resources.GLUE_DATABASE
        db = glue.CfnDatabase(
            self, "Database", catalog_id=account, database_input={"name": self.database_name}
        )
        location = f"s3://{bucket.bucket_name}/{resources.PREFIX_USAGE}"
        table = glue.CfnTable(
            self,
            "UsageTable",
            catalog_id=account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=resources.USAGE_TABLE,
                table_type="EXTERNAL_TABLE",
                partition_keys=[glue.CfnTable.ColumnProperty(name="dt", type="string")],
                parameters={
                    "classification": "json",
                    "projection.enabled": "true",
                    "projection.dt.type": "date",
                    "projection.dt.format": "yyyy-MM-dd",
                    "projection.dt.range": "2025-01-01,NOW",
                    "projection.dt.interval": "1",
                    "projection.dt.interval.unit": "DAYS",
                    "storage.location.template": location + "dt=${dt}/",
                },
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in usage_sql.columns()],
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hive.hcatalog.data.JsonSerDe"
                    ),
                ),
            ),
        )
        table.add_resource_dependency(db)
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
            sql = usage_sql.fill(text, database=self.database_name, table=resources.USAGE_TABLE)
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
