"""cdk-nag AwsSolutions checks, and each acknowledgment with its reason."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

# Rule id -> why it does not apply here. Applied on the stack; tests check each one suppresses a finding.
ACKNOWLEDGED = {
    "AwsSolutions-IAM4": "Lambda functions use the AWS managed AWSLambdaBasicExecutionRole for their log streams.",
    "AwsSolutions-IAM5": "Wildcards are object-key prefixes of the data bucket (checkpoints/*, usage/*, results/*, "
    "items/*, failures/*, map-runs/*, reviews/*, usage-compacted/*), X-Ray actions that take no resource, and the state machine's own executions.",
    "AwsSolutions-SMG4": "Provider API keys are issued by the provider; Secrets Manager cannot rotate them.",
    "AwsSolutions-L1": "The dependency layer is built and byte-compiled for Python 3.12.",
}


_S3_PREFIX = "S3 object-key prefixes of the data bucket: each function reaches only its own prefixes"
_S3_ACTIONS = (
    "CDK's bucket grants (read/write/delete) expand to these action groups, limited to the prefixes above"
)
# Findings that need their own acknowledgment (cdk-nag reports wildcard findings one by one).
FINDINGS = {
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]": "CloudWatch Logs access of the Lambda functions (AWS managed, scoped by AWS to log groups)",
    "AwsSolutions-IAM5[Action::s3:Abort*]": _S3_ACTIONS,
    "AwsSolutions-IAM5[Action::s3:DeleteObject*]": _S3_ACTIONS,
    "AwsSolutions-IAM5[Action::s3:GetBucket*]": _S3_ACTIONS,
    "AwsSolutions-IAM5[Action::s3:GetObject*]": _S3_ACTIONS,
    "AwsSolutions-IAM5[Action::s3:List*]": _S3_ACTIONS,
    "AwsSolutions-IAM5[Resource::*]": "X-Ray PutTraceSegments/PutTelemetryRecords take no resource (AWS requires *)",
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/checkpoints/*]": _S3_PREFIX,
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/failures/*]": "the state machine writes one failure record per failed Distributed Map item (s3:PutObject only)",
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/items/*]": _S3_PREFIX,
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/map-runs/*]": "the Distributed Map's ResultWriter writes the Map Run's result files there (the actions AWS documents for it)",
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/results/*]": _S3_PREFIX,
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/usage/*]": _S3_PREFIX,
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/reviews/*]": "graph-step keeps each item's pending review (interrupts and the callback token) there",
    "AwsSolutions-IAM5[Resource::<DataBucketE6B0FAA8.Arn>/usage-compacted/*]": "usage compaction creates "
    "Parquet and manifests under usage-compacted/ only (never overwriting: If-None-Match)",
    "AwsSolutions-IAM5[Resource::<FunctionsgraphstepE053112F.Arn>:*]": "invoking any version of graph-step",
    "AwsSolutions-IAM5[Resource::<Functionsvalidateinput5AB8F18B.Arn>:*]": "invoking any version of validate-input",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:stepgraph-graph-fanout/*]": "Distributed Map describes and stops the child executions of this state machine only",
}


def add_checks(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct) -> None:
    cdk.Validations.of(scope).acknowledge(
        *(
            cdk.Acknowledgment(id=f"AwsSolutions::{k}", reason=v)
            for k, v in {**ACKNOWLEDGED, **FINDINGS}.items()
        )
    )
