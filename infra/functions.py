"""The Lambda functions (graph-step, validate-input, credits-poller) and the dependency layer.

Each function gets only what it needs: graph-step reads and writes its bucket prefixes and the limiter
table and reads the provider secrets; validate-input reads and writes items/; the poller reads the
provider secrets, the management-key secrets (it alone) and the limiter's day counters.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as sm
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stepgraph import resources

ROOT = Path(__file__).resolve().parents[1]


def stand_in_layer() -> Path:
    """A one-file layer, so `cdk synth` works on a fresh clone; its fixed content keeps the asset hash stable."""
    d = Path(tempfile.gettempdir()) / "stepgraph-stand-in-layer"
    (d / "python").mkdir(parents=True, exist_ok=True)
    (d / "python" / "STAND_IN.txt").write_text("stand-in layer: build the real one with `make layer`\n")
    return d


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
        layer_path = Path(layer_dir) if Path(layer_dir).is_absolute() else ROOT / layer_dir
        if not layer_path.is_dir():
            layer_path = stand_in_layer()
            print(
                f"note: {layer_dir} is not built: synthesizing against a stand-in layer "
                "(run `make layer` before `cdk deploy`)",
                file=sys.stderr,
            )
        self.layer = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(layer_path)),
            compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
            compatible_architectures=[lambda_.Architecture.X86_64],
            description="stepgraph and its dependencies (built by `make layer`)",
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
                dead_letter_queue=dead_letters,
                retry_attempts=2 if dead_letters else None,
                max_event_age=Duration.hours(1) if dead_letters else None,
            )

        self.graph_step = function(
            resources.GRAPH_STEP_FUNCTION,
            "graph_step",
            Duration.minutes(5),
            1024,
            graph_step_reserved_concurrency,
        )
        self.validate = function(resources.VALIDATE_FUNCTION, "validate_input", Duration.seconds(60), 512)
        self.poller_dead_letters = sqs.Queue(
            self,
            "PollerDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
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
        bucket.grant_read(step_role, f"{resources.PREFIX_ITEMS}*")
        table.grant(step_role, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
        for secret in secrets.values():
            secret.grant_read(step_role)
            secret.grant_read(self.poller)
        for secret in management_secrets.values():
            secret.grant_read(self.poller)
        bucket.grant_read_write(self.validate, f"{resources.PREFIX_ITEMS}*")
        table.grant(self.poller, "dynamodb:GetItem")
        events.Rule(
            self,
            "PollCredits",
            description="stepgraph: poll provider credits and free-tier use",
            schedule=events.Schedule.rate(Duration.minutes(15)),
            # A poll that cannot be delivered is retried twice within the hour, then kept in the queue.
            targets=[
                targets.LambdaFunction(
                    self.poller,
                    retry_attempts=2,
                    max_event_age=Duration.hours(1),
                    dead_letter_queue=self.poller_dead_letters,
                )
            ],
        )
