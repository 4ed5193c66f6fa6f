"""The usage-compaction function: once a day, each finished UTC day's raw usage JSONL becomes Parquet.

It reads usage/, creates objects under usage-compacted/ (never overwrites: `If-None-Match`), and tags the
raw objects it verified, which the data bucket's lifecycle then expires. DuckDB comes in its own layer
so the dependency layer of graph-step stays small.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.lambda_parts import ROOT, async_invoke, built_layer, dead_letter_queue, schedule
from stepgraph import resources


class UsageCompaction(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        bucket: s3.IBucket,
        dependency_layer: lambda_.ILayerVersion,
        duckdb_layer_dir: str,
        retention: logs.RetentionDays,
        removal: RemovalPolicy,
    ) -> None:
        super().__init__(scope, cid)
        # Unbuilt on a fresh clone's `make synth`: the functions' note already says to build the layers.
        duckdb_layer, _ = built_layer(
            self,
            "DuckDB",
            duckdb_layer_dir,
            description="DuckDB for usage compaction (built by `make layer`)",
        )
        log_group = logs.LogGroup(self, "Logs", retention=retention, removal_policy=removal)
        # A run that fails (or whose event is dropped) is kept here; the next day's run compacts every
        # finished day again, so nothing is lost meanwhile.
        self.dead_letters = dead_letter_queue(self, "DeadLetters")
        self.function = lambda_.Function(
            self,
            "Function",
            description=f"stepgraph {resources.COMPACTION_FUNCTION}",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(str(ROOT / "lambdas" / "usage_compaction")),
            layers=[dependency_layer, duckdb_layer],
            timeout=Duration.minutes(15),
            memory_size=2048,
            ephemeral_storage_size=Size.gibibytes(4),  # a day's raw objects and its Parquet, in /tmp
            environment={
                resources.ENV_BUCKET: bucket.bucket_name,
                "POWERTOOLS_SERVICE_NAME": resources.SERVICE_NAME,
            },
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            reserved_concurrent_executions=1,  # two overlapping runs would only refuse each other's manifests
            **async_invoke(self.dead_letters),
        )
        bucket.grant_read(self.function, f"{resources.PREFIX_USAGE}*")
        bucket.grant_read_write(self.function, f"{resources.PREFIX_USAGE_COMPACTED}*")
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObjectTagging"],
                resources=[bucket.arn_for_objects(f"{resources.PREFIX_USAGE}*")],
            )
        )
        schedule(
            self,
            "Daily",
            self.function,
            description="stepgraph: compact the usage records of each finished UTC day",
            when=events.Schedule.cron(minute="30", hour="1"),  # settled: the day ended 1.5 h ago
            dead_letters=self.dead_letters,
            event=events.RuleTargetInput.from_object({}),
        )
