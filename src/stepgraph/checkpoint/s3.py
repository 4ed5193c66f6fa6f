"""The S3 calls the saver needs, with its errors turned into ones a person can act on."""

from __future__ import annotations

from typing import Any

from stepgraph import s3 as s3util
from stepgraph.checkpoint.layout import CheckpointConflict, CheckpointStoreError


class S3Objects:
    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket, self.prefix = bucket, prefix
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def _fail(self, exc: Exception, action: str) -> CheckpointStoreError:
        code = s3util.error_code(exc)
        hint = {
            "NoSuchBucket": "create the bucket or set STEPGRAPH_BUCKET to an existing one",
            "AccessDenied": "grant the function s3:GetObject/PutObject/ListBucket/DeleteObject on it",
        }.get(code, "check the bucket, the prefix and the function's permissions")
        return CheckpointStoreError(
            f"cannot {action} checkpoints in s3://{self.bucket}/{self.prefix} ({code})", hint=hint
        )

    def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return s3util.get_bytes(self.client, self.bucket, key)
        except (ClientError, s3util.S3Failure) as exc:
            raise self._fail(exc, "read") from None

    def create(self, key: str, body: bytes, *, first_wins: bool = False) -> None:
        """Create only: an existing object with the same bytes is fine; different bytes conflict
        (or, with `first_wins`, are dropped as LangGraph drops a task's repeated writes)."""
        from botocore.exceptions import ClientError

        try:
            if s3util.put_once(self.client, self.bucket, key, body):
                return
        except s3util.WriteBusy:
            raise CheckpointConflict(
                f"s3://{self.bucket}/{key}: S3 kept answering 409 (a concurrent write to this key)",
                hint="the step is retried by the state machine; it resumes from the latest checkpoint",
            ) from None
        except (ClientError, s3util.S3Failure) as exc:
            raise self._fail(exc, "write") from None
        if first_wins or self.get(key) == body:
            return
        raise CheckpointConflict(
            f"s3://{self.bucket}/{key} already exists with other content: another writer saved this step",
            hint="reload the thread (get_tuple) and continue from its latest checkpoint",
        )

    def replace(self, key: str, body: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        except ClientError as exc:
            raise self._fail(exc, "write") from None

    def keys(self, prefix: str, *, limit: int | None = None) -> list[str]:
        from botocore.exceptions import ClientError

        out: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if limit:
            kwargs["MaxKeys"] = limit
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                out += [o["Key"] for o in page.get("Contents", [])]
                if (limit and len(out) >= limit) or not page.get("IsTruncated"):
                    return out[:limit] if limit else out
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except ClientError as exc:
            raise self._fail(exc, "list") from None

    def folders(self, prefix: str) -> list[str]:
        from botocore.exceptions import ClientError

        out: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        try:
            while True:
                page = self.client.list_objects_v2(**kwargs)
                out += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
                if not page.get("IsTruncated"):
                    return out
                kwargs["ContinuationToken"] = page["NextContinuationToken"]
        except ClientError as exc:
            raise self._fail(exc, "list") from None

    def delete(self, keys: list[str]) -> None:
        from botocore.exceptions import ClientError

        try:
            for i in range(0, len(keys), 1000):
                chunk = [{"Key": k} for k in keys[i : i + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
        except ClientError as exc:
            raise self._fail(exc, "delete") from None

    def copy(self, src: str, dst: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=dst, CopySource={"Bucket": self.bucket, "Key": src}
            )
        except ClientError as exc:
            raise self._fail(exc, "copy") from None
