"""AWS clients, created lazily once per process (a Lambda container) and shared."""

from __future__ import annotations

import threading
from typing import Any

_clients: dict[tuple[str, str | None], Any] = {}
_lock = threading.Lock()


def client(service: str, endpoint_url: str | None = None) -> Any:
    with _lock:
        key = (service, endpoint_url)
        if key not in _clients:
            import boto3

            # A session per client: boto3's default session is not safe to share across threads.
            _clients[key] = boto3.session.Session().client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]
        return _clients[key]


def reset() -> None:
    """Forget every client (tests and the local stack switch endpoints)."""
    with _lock:
        _clients.clear()
