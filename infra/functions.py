"""The Lambda functions (graph-step, validate-input, credits-poller) and the dependency layer.

Each function gets only what it needs: graph-step reads and writes its bucket prefixes and the limiter
table and reads the provider secrets; validate-input reads and writes items/; the poller reads the
provider secrets, the management-key secrets (it alone) and the limiter's day counters.
"""

from __future__ import annotations

import sys

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as sm
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.lambda_parts import ROOT, async_invoke, built_layer, dead_letter_queue, schedule
from stepgraph import resources


class Functions(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        bucket: s3.IBucket,
        table: dynamodb.ITableV2,
        secrets: dict[str, sm.Secret],
        management_secrets: dict[str, sm.Secret],
        layer_dir: str,
        graph_package: str | None,
        providers: str | None,
        runtime_env: dict[str, str],
        graph_step_reserved_concurrency: int | None = None,
        retention: logs.RetentionDays,
        removal: RemovalPolicy,
    ) -> None:
        super().__init__(scope, cid)
        self.layer, built = built_layer(
            self,
            "Dependencies",
            layer_dir,
            description="stepgraph and its dependencies (built by `make layer`)",
        )
        if not built:
            print(
                f"note: {layer_dir} is not built: synthesizing against a stand-in layer "
                "(run `make layer` before `cdk deploy`)",
                file=sys.stderr,
            )
        layers = [self.layer]
        if graph_package:
            layers.append(
                lambda_.LayerVersion(
                    self,
                    "Graphs",
                    code=lambda_.Code.from_asset(graph_package),
                    compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
                    description="the user's graphs",
                )
            )
        env = {
            resources.ENV_BUCKET: bucket.bucket_name,
            resources.ENV_LIMITER_TABLE: table.table_name,
            "POWERTOOLS_SERVICE_NAME": resources.SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": resources.METRIC_NAMESPACE,
            **({resources.ENV_PROVIDERS: providers} if providers else {}),
            **runtime_env,
        }

        def function(
            name: str,
            directory: str,
            timeout: Duration,
            memory: int,
            reserved: int | None = None,
            dead_letters: sqs.IQueue | None = None,
        ) -> lambda_.Function:
            log_group = logs.LogGroup(self, f"{directory}-logs", retention=retention, removal_policy=removal)
            return lambda_.Function(
                self,
                directory,
                function_name=None,
                description=f"stepgraph {name}",
                runtime=lambda_.Runtime.PYTHON_3_12,
                architecture=lambda_.Architecture.X86_64,
                handler="handler.handler",
                code=lambda_.Code.from_asset(str(ROOT / "lambdas" / directory)),
                layers=layers,
                timeout=timeout,
                memory_size=memory,
                environment=env,
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
                reserved_concurrent_executions=reserved,
                # Only the scheduled poller is invoked asynchronously: its failed events are kept.
                **(async_invoke(dead_letters) if dead_letters else {}),
            )

        self.graph_step = function(
            resources.GRAPH_STEP_FUNCTION,
            "graph_step",
            Duration.minutes(5),
            1024,
            graph_step_reserved_concurrency,
        )
        self.validate = function(resources.VALIDATE_FUNCTION, "validate_input", Duration.seconds(60), 512)
        self.poller_dead_letters = dead_letter_queue(self, "PollerDeadLetters")
        self.poller = function(
            resources.CREDITS_POLLER_FUNCTION,
            "credits_poller",
            Duration.seconds(60),
            256,
            dead_letters=self.poller_dead_letters,
        )

        step_role = self.graph_step
        bucket.grant_read_write(step_role, f"{resources.PREFIX_CHECKPOINTS}*")
        bucket.grant_delete(step_role, f"{resources.PREFIX_CHECKPOINTS}*")
        bucket.grant_put(step_role, f"{resources.PREFIX_USAGE}*")
        bucket.grant_read_write(step_role, f"{resources.PREFIX_RESULTS}*")
        bucket.grant_read_write(step_role, f"{resources.PREFIX_REVIEWS}*")  # pending interrupts + task tokens
        bucket.grant_read(step_role, f"{resources.PREFIX_ITEMS}*")
        table.grant(step_role, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        for secret in secrets.values():
            secret.grant_read(step_role)
            secret.grant_read(self.poller)
        for secret in management_secrets.values():
            secret.grant_read(self.poller)
        bucket.grant_read_write(self.validate, f"{resources.PREFIX_ITEMS}*")
        table.grant(self.poller, "dynamodb:GetItem")
        schedule(
            self,
            "PollCredits",
            self.poller,
            description="stepgraph: poll provider credits and free-tier use",
            when=events.Schedule.rate(Duration.minutes(15)),
            dead_letters=self.poller_dead_letters,
        )
