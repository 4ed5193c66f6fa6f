"""The usage lake's objects behind a tiny interface: an S3 bucket, or a directory laid out the same way.

Compaction reads raw objects, creates Parquet and manifests once (never overwriting) and marks the raw
objects it verified; in S3 the mark is an object tag that the lifecycle rule expires on.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from stepgraph import resources

CREATED_ALREADY = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class Lake(Protocol):
    def keys(self, prefix: str) -> list[str]: ...

    def days(self, prefix: str) -> list[str]:
        """The `YYYY-MM-DD` of every `dt=` folder directly under `prefix`."""

    def get(self, key: str) -> bytes: ...

    def get_many(self, keys: list[str]) -> list[bytes]: ...

    def put_once(self, key: str, body: bytes) -> bool:
        """Create `key`; False (and nothing written) when it already exists."""

    def mark_compacted(self, keys: list[str]) -> None: ...


def _day_of(name: str) -> str | None:
    name = name.rstrip("/").rsplit("/", 1)[-1]
    return name[3:] if name.startswith("dt=") and len(name) == 13 else None


class S3Lake:
    def __init__(self, bucket: str, client: Any, *, workers: int = 16) -> None:
        self.bucket, self.client, self.workers = bucket, client, workers

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def days(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        )
        found = (_day_of(p["Prefix"]) for page in pages for p in page.get("CommonPrefixes", []))
        return sorted(d for d in found if d)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def get_many(self, keys: list[str]) -> list[bytes]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self.get, keys))

    def put_once(self, key: str, body: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in CREATED_ALREADY:
                return False
            raise
        return True

    def mark_compacted(self, keys: list[str]) -> None:
        tag = {"TagSet": [{"Key": resources.COMPACTED_TAG[0], "Value": resources.COMPACTED_TAG[1]}]}

        def mark(key: str) -> None:
            self.client.put_object_tagging(Bucket=self.bucket, Key=key, Tagging=tag)

        with ThreadPoolExecutor(self.workers) as pool:
            list(pool.map(mark, keys))


class DirLake:
    """A local copy of the lake (e.g. a demo's export): marks are a list beside the manifests."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if not folder.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in folder.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    def days(self, prefix: str) -> list[str]:
        folder = self.root / prefix
        found = (_day_of(p.name) for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ()
        return sorted(d for d in found if d)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def get_many(self, keys: list[str]) -> list[bytes]:
        return [self.get(k) for k in keys]

    def put_once(self, key: str, body: bytes) -> bool:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        return True

    def mark_compacted(self, keys: list[str]) -> None:
        """Local directories have no lifecycle: the raw files stay, and the view skips their days."""
