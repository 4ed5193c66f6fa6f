"""Run the simulator on a loopback port, in the foreground or in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from stepgraph.clock import SYSTEM_CLOCK, Clock
from stepgraph.local.simulator.app import create_app
from stepgraph.local.simulator.state import SimOptions, SimState


@dataclass
class SimulatorHandle:
    """A running simulator: URLs plus the admin calls tests and the demo use."""

    root_url: str
    state: SimState

    @property
    def base_url(self) -> str:
        """OpenRouter-style base URL (`.../api/v1`)."""
        return self.root_url + "/api/v1"

    @property
    def ollama_base_url(self) -> str:
        """Ollama Cloud-style base URL (`.../v1`)."""
        return self.root_url + "/v1"

    def _admin(self, method: str, path: str, **kw: Any) -> Any:
        resp = httpx.request(method, self.root_url + path, timeout=10, **kw)
        resp.raise_for_status()
        return resp.json()

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "/_sim/stats")

    def requests(self) -> list[dict[str, Any]]:
        return self._admin("GET", "/_sim/requests")

    def queue_faults(self, *faults: dict[str, Any]) -> int:
        return self._admin("POST", "/_sim/faults", json={"next": list(faults)})["queued"]

    def reset(self) -> None:
        self._admin("POST", "/_sim/reset")

    def revoke(self, key: str) -> None:
        self._admin("POST", f"/_sim/keys/{key}/revoke")


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _server(state: SimState, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(create_app(state), log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)


@contextmanager
def running_simulator(
    *, host: str = "127.0.0.1", port: int = 0, clock: Clock = SYSTEM_CLOCK, **options: Any
) -> Iterator[SimulatorHandle]:
    """Start the simulator in a background thread (port 0: a free one) and stop it on exit."""
    state = SimState(SimOptions(**options), clock=clock)
    sock = _bind(host, port)
    server = _server(state, "warning")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="stepgraph-simulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the simulator did not start within 10 s")
        time.sleep(0.01)
    try:
        yield SimulatorHandle(f"http://{host}:{sock.getsockname()[1]}", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_forever(*, host: str, port: int, **options: Any) -> None:
    state = SimState(SimOptions(**options))
    server = _server(state, "info")
    server.run(sockets=[_bind(host, port)])
