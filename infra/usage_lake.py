"""The usage lake: Glue database and table (partition projection on dt), an Athena workgroup and the
named queries from athena/, with `${database}`/`${table}` filled. Columns come from athena/create_table.sql."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from aws_cdk import Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stepgraph import resources

ATHENA = Path(__file__).resolve().parents[1] / "athena"
BYTES_SCANNED_CUTOFF = 10 * 1024**3  # 10 GiB per query


def ddl_columns() -> list[tuple[str, str]]:
    body = (ATHENA / "create_table.sql").read_text().split("(", 1)[1].split("PARTITIONED BY")[0]
    return re.findall(r"`(\w+)` (\w+)", body)


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
                    columns=[glue.CfnTable.ColumnProperty(name=n, type=t) for n, t in ddl_columns()],
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
        for path in sorted((ATHENA / "queries").glob("*.sql")):
            sql = Template(path.read_text()).safe_substitute(
                database=self.database_name,
                table=resources.USAGE_TABLE,
                view=resources.USAGE_VIEW,
                since="1970-01-01",
            )
            query = athena.CfnNamedQuery(
                self,
                f"Query{path.stem.title().replace('_', '')}",
                name=f"stepgraph-{path.stem}",
                database=self.database_name,
                query_string=sql,
                work_group=self.workgroup.ref,
                description=sql.splitlines()[0].lstrip("- ")[:1024],
            )
            query.add_resource_dependency(self.workgroup)
