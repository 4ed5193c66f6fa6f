"""The S3 calls the checkpointer, the usage ledger and the result store share, behind one error boundary.

`mapped()` turns botocore's `ClientError` into a few typed errors, as httpx's `map_exceptions` does for
transport errors, so every caller reads one vocabulary instead of comparing error-code strings:

| S3 answer                                   | raised          |
|---------------------------------------------|-----------------|
| 412 `PreconditionFailed`                    | `ObjectExists`  |
| 409 `ConditionalRequestConflict`            | `WriteBusy`     |
| 404 `NoSuchKey`                             | `NoSuchObject`  |
| 403 / `AccessDenied`, `NoSuchBucket`        | `S3Unusable`    |
| anything else (throttling, 5xx, ...)        | the `ClientError` itself (transient: the caller's retry applies) |

`put_once()` is the create-only write (`If-None-Match: *`): 409 (another conditional write to the key in
flight, S3 asks for a retry) is retried with a short backoff; 412 means the key is taken.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EXISTS_CODES = frozenset({"PreconditionFailed", "412"})
BUSY_CODES = frozenset({"ConditionalRequestConflict", "409"})
MISSING_CODES = frozenset({"NoSuchKey", "404"})
UNUSABLE_CODES = frozenset({"NoSuchBucket", "AccessDenied", "403"})
BUSY_BACKOFF_S = (0.05, 0.2, 0.5)


class S3Failure(Exception):
    """An S3 answer a caller can act on; `code` is S3's error code."""

    def __init__(self, code: str, bucket: str, key: str) -> None:
        self.code, self.bucket, self.key = code, bucket, key
        super().__init__(f"s3://{bucket}/{key}: {code}")


class ObjectExists(S3Failure):
    """A create-only write found the key taken (412)."""


class WriteBusy(S3Failure):
    """Another conditional write to the key stayed in flight (409) through every retry."""


class NoSuchObject(S3Failure):
    """The key holds no object."""


class S3Unusable(S3Failure):
    """The bucket is missing or the caller may not use it: retrying cannot help."""


def error_code(exc: BaseException) -> str:
    """S3's error code of a botocore `ClientError` or an `S3Failure` (the class name for anything else)."""
    if isinstance(exc, S3Failure):
        return exc.code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


_MAPPED: tuple[tuple[frozenset[str], type[S3Failure]], ...] = (
    (EXISTS_CODES, ObjectExists),
    (BUSY_CODES, WriteBusy),
    (MISSING_CODES, NoSuchObject),
    (UNUSABLE_CODES, S3Unusable),
)


@contextmanager
def mapped(bucket: str, key: str = "") -> Iterator[None]:
    """Raise the typed error for a known S3 answer; leave other `ClientError`s as they are."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        for codes, error in _MAPPED:
            if code in codes:
                raise error(code, bucket, key) from exc
        raise


def put_once(
    client: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    content_type: str | None = None,
    backoff_s: tuple[float, ...] = BUSY_BACKOFF_S,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Create `key` only if it does not exist.

    Args:
        client: a boto3 S3 client.
        bucket, key, body: where and what to write.
        content_type: the object's Content-Type, if any.
        backoff_s: the waits between retries of a 409.
        sleep: injected for tests.

    Returns:
        True when this call created the object, False when the key was already taken (412).

    Raises:
        WriteBusy: S3 kept answering 409 through every retry.
        S3Unusable, NoSuchObject or the `ClientError`: see `mapped()`.

    Example:
        >>> if not put_once(s3, "bucket", "results/run/1.json", b"{}"):
        ...     pass  # an earlier writer created it; keep theirs
    """
    extra = {"ContentType": content_type} if content_type else {}
    for delay in (*backoff_s, None):
        try:
            with mapped(bucket, key):
                client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
            return True
        except ObjectExists:
            return False
        except WriteBusy:
            if delay is None:
                raise
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def get_bytes(client: Any, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when the key holds none."""
    try:
        with mapped(bucket, key):
            return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except NoSuchObject:
        return None
