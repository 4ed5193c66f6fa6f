"""`StepGraphStack`: composes one construct per concern."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.context import StackSettings
from infra.data import DataBucket
from infra.functions import Functions
from infra.limiter_table import LimiterTable
from infra.monitoring import Monitoring
from infra.nag import acknowledge
from infra.secrets import ProviderSecrets
from infra.state_machine import GraphStateMachine
from infra.usage_compaction import UsageCompaction
from infra.usage_lake import UsageLake


class StepGraphStack(cdk.Stack):
    def __init__(self, scope: Construct, cid: str, *, settings: StackSettings, **kwargs: Any) -> None:
        super().__init__(
            scope,
            cid,
            description="stepgraph: LangGraph graphs over batches, within provider limits",
            **kwargs,
        )
        removal = (
            cdk.RemovalPolicy.DESTROY if settings.removal_policy == "destroy" else cdk.RemovalPolicy.RETAIN
        )
        retention = getattr(logs.RetentionDays, _retention(settings.log_retention_days))
        data = DataBucket(self, "Data", removal=removal)
        table = LimiterTable(self, "Limiter", removal=removal)
        lake = UsageLake(self, "UsageLake", bucket=data.bucket)
        secrets = ProviderSecrets(self, "ProviderKeys", removal=removal)
        functions = Functions(
            self,
            "Functions",
            bucket=data.bucket,
            table=table.table,
            secrets=secrets.secrets,
            management_secrets=secrets.management,
            layer_dir=settings.layer_dir,
            graph_package=settings.graph_package,
            providers=settings.providers,
            runtime_env=settings.runtime_env(),
            graph_step_reserved_concurrency=settings.graph_step_reserved_concurrency,
            retention=retention,
            removal=removal,
        )
        UsageCompaction(
            self,
            "UsageCompaction",
            bucket=data.bucket,
            dependency_layer=functions.layer,
            duckdb_layer_dir=settings.duckdb_layer_dir,
            retention=retention,
            removal=removal,
        )
        machine = GraphStateMachine(
            self,
            "Fanout",
            validate=functions.validate,
            graph_step=functions.graph_step,
            bucket=data.bucket,
            retention=retention,
            removal=removal,
            max_run_days=settings.max_run_days,
        )
        monitoring = Monitoring(
            self,
            "Monitoring",
            daily_budget_usd=settings.daily_budget_usd,
            min_credits_usd=settings.min_credits_usd,
            free_requests_alarm=settings.free_requests_alarm,
            alarm_email=settings.alarm_email,
            graph_step=functions.graph_step,
            state_machine=machine.state_machine,
        )
        cdk.CfnOutput(self, "StateMachineArn", value=machine.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "DataBucketName", value=data.bucket.bucket_name)
        cdk.CfnOutput(self, "LimiterTableName", value=table.table.table_name)  # `status --table`
        cdk.CfnOutput(self, "AthenaWorkGroup", value=lake.workgroup.ref)
        cdk.CfnOutput(self, "GlueDatabase", value=lake.database_name)
        cdk.CfnOutput(self, "AlarmTopicArn", value=monitoring.topic.topic_arn)
        cdk.CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://console.aws.amazon.com/cloudwatch/home?region={self.region}#dashboards:name=stepgraph",
        )
        cdk.Tags.of(self).add("app", "stepgraph")
        acknowledge(self)


def _retention(days: int) -> str:
    return {
        1: "ONE_DAY",
        3: "THREE_DAYS",
        5: "FIVE_DAYS",
        7: "ONE_WEEK",
        14: "TWO_WEEKS",
        30: "ONE_MONTH",
        60: "TWO_MONTHS",
        90: "THREE_MONTHS",
        180: "SIX_MONTHS",
        365: "ONE_YEAR",
    }[days]
