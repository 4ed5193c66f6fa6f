"""The limiter table: every Lambda's rate limits and budget counters, one conditional write per grant."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from stepgraph import resources


class LimiterTable(Construct):
    def __init__(self, scope: Construct, cid: str, *, removal: RemovalPolicy) -> None:
        super().__init__(scope, cid)
        self.table = dynamodb.TableV2(
            self,
            "Table",
            partition_key=dynamodb.Attribute(
                name=resources.LIMITER_PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            billing=dynamodb.Billing.on_demand(),
            time_to_live_attribute=resources.LIMITER_TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal,
        )
