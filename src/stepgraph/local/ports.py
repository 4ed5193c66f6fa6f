"""Fail at once, with the port named, when a local server's port is taken (instead of a server thread
that dies on its own and leaves the command waiting forever)."""

from __future__ import annotations

import socket

from stepgraph.errors import ConfigError


def ensure_free(port: int, *, host: str = "127.0.0.1", flag: str = "--port") -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"{flag} {port} is not a port", hint="use 1-65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a socket in TIME_WAIT is not "in use"
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{flag} {port}: {host}:{port} is in use ({exc.strerror})",
                hint=f"stop what listens there or pick another {flag}",
            ) from None
