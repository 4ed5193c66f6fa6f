"""The data bucket (checkpoints/, usage/, results/, items/, failures/) and its access-log bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stepgraph import resources


class DataBucket(Construct):
    def __init__(self, scope: Construct, cid: str, *, removal: RemovalPolicy) -> None:
        super().__init__(scope, cid)
        # Grant S3 log delivery with a bucket policy instead of the legacy LogDeliveryWrite ACL.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # ACLs off: S3 log delivery is granted by a bucket policy, not the legacy LogDeliveryWrite ACL.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=removal,
            auto_delete_objects=False,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,  # usage records and checkpoints are never overwritten; versioning guards deletes
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data/",
            lifecycle_rules=[
                s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=Duration.days(30)),
                s3.LifecycleRule(id="items", prefix=resources.PREFIX_ITEMS, expiration=Duration.days(30)),
                s3.LifecycleRule(
                    id="checkpoints", prefix=resources.PREFIX_CHECKPOINTS, expiration=Duration.days(90)
                ),
                s3.LifecycleRule(id="athena-results", prefix="athena-results/", expiration=Duration.days(30)),
                # Raw usage objects go once compaction verified their records in Parquet and tagged them.
                s3.LifecycleRule(
                    id="usage-compacted-raw",
                    prefix=resources.PREFIX_USAGE,
                    tag_filters={resources.COMPACTED_TAG[0]: resources.COMPACTED_TAG[1]},
                    expiration=Duration.days(7),
                ),
                s3.LifecycleRule(
                    id="usage-to-ia",
                    prefix=resources.PREFIX_USAGE,
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(90),
                        )
                    ],
                ),
            ],
            removal_policy=removal,
        )
