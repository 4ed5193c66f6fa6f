"""The state machine: statemachine/graph_fanout.asl.json with its substitutions, logged and traced.

The definition goes into the template itself (DefinitionString), not an S3 asset, so cfn-lint and
template scanners see it; its TimeoutSeconds comes from the CDK context `max_run_days`."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stepgraph import resources


def definition_text(max_run_days: int) -> str:
    definition = json.loads(resources.statemachine_text())
    definition["TimeoutSeconds"] = resources.run_timeout_s(max_run_days)
    return json.dumps(definition, indent=1)


class GraphStateMachine(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        validate: lambda_.IFunction,
        graph_step: lambda_.IFunction,
        bucket: s3.IBucket,
        retention: logs.RetentionDays,
        removal: RemovalPolicy,
        max_run_days: int = resources.DEFAULT_MAX_RUN_DAYS,
    ) -> None:
        super().__init__(scope, cid)
        log_group = logs.LogGroup(self, "Logs", retention=retention, removal_policy=removal)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=resources.STATE_MACHINE_NAME,
            definition_body=sfn.DefinitionBody.from_string(definition_text(max_run_days)),
            definition_substitutions={
                "ValidateFunctionArn": validate.function_arn,
                "GraphStepFunctionArn": graph_step.function_arn,
                "DataBucketName": bucket.bucket_name,
            },
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            tracing_enabled=True,
        )
        validate.grant_invoke(self.state_machine)
        graph_step.grant_invoke(self.state_machine)
        bucket.grant_read(self.state_machine, f"{resources.PREFIX_ITEMS}*")  # Distributed Map's ItemReader
        # Distributed Map items write their failure record (aws-sdk:s3:putObject); nothing else is written.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{resources.PREFIX_FAILURES}*")]
            )
        )
        # The Distributed Map's ResultWriter writes the children's outputs under map-runs/ (what AWS asks for it).
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:AbortMultipartUpload",
                ],
                resources=[bucket.arn_for_objects(f"{resources.PREFIX_MAP_RUNS}*")],
            )
        )
        stack = Stack.of(self)
        own = f"arn:{stack.partition}:states:{stack.region}:{stack.account}:stateMachine:{resources.STATE_MACHINE_NAME}"
        runs = f"arn:{stack.partition}:states:{stack.region}:{stack.account}:execution:{resources.STATE_MACHINE_NAME}/*"
        # Distributed Map starts child executions of this very state machine.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[own])
        )
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution"], resources=[runs]
            )
        )
