"""AWS clients for the CLI and the library: made on demand (one boto3 session each, as boto3's default
session is not safe to share across threads), against AWS or a local endpoint (`--endpoint-url`)."""

from __future__ import annotations

from typing import Any


def client(service: str, endpoint_url: str | None = None, region: str | None = None) -> Any:
    import boto3

    return boto3.session.Session().client(service, endpoint_url=endpoint_url, region_name=region)  # type: ignore[call-overload]


def region_of(arn: str) -> str | None:
    """The region an ARN names (`arn:aws:states:<region>:...`), or None."""
    parts = arn.split(":")
    return parts[3] or None if len(parts) > 4 and parts[0] == "arn" else None
