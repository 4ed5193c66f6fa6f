"""Run the simulator on a loopback port, in the foreground or in a background thread."""

from __future__ import annotations

import logging
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
from stepgraph.local.simulator.providers import PoolState, make_state
from stepgraph.local.simulator.state import SimOptions, SimState


@dataclass
class SimulatorHandle:
    """A running simulator: URLs plus the admin calls tests and the demo use."""

    root_url: str
    state: SimState | PoolState | None  # None when the simulator runs in its own process: use the admin calls

    @property
    def base_url(self) -> str:
        """OpenRouter-style base URL (`.../api/v1`)."""
        return self.root_url + "/api/v1"

    @property
    def ollama_base_url(self) -> str:
        """Ollama Cloud-style base URL (`.../v1`)."""
        return self.root_url + "/v1"

    @property
    def openai_base_url(self) -> str:
        """OpenAI-style base URL (`.../v1`), as Groq, Cerebras and NVIDIA name theirs."""
        return self.root_url + "/v1"

    def provider(self, name: str) -> SimulatorHandle:
        """One provider of a simulator serving several (`providers=`): its URLs and admin calls."""
        state = self.state.providers.get(name) if isinstance(self.state, PoolState) else None
        if isinstance(self.state, PoolState) and state is None:
            raise KeyError(
                f"the simulator serves no provider {name!r}; it serves {sorted(self.state.providers)}"
            )
        return SimulatorHandle(f"{self.root_url}/{name}", state)

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

    def go_down(self, for_s: float, *, after_s: float = 0.0, status: int | str = 503) -> None:
        """The provider answers `status` (a 5xx, or "connection": dropped connections) for `for_s` seconds."""
        self._admin("POST", "/_sim/down", json={"for_s": for_s, "after_s": after_s, "status": status})

    def delist(self, model: str) -> None:
        """The provider serves `model` no more: 404 model not found."""
        self._admin("POST", f"/_sim/models/{model}/delist")

    def revoke(self, key: str) -> None:
        self._admin("POST", f"/_sim/keys/{key}/revoke")


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _not_a_simulated_drop(record: logging.LogRecord) -> bool:
    """uvicorn logs an app error when a simulated outage drops a connection: that one is on purpose."""
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, ConnectionResetError) and "simulated" in str(exc))


def _server(state: SimState | PoolState, log_level: str) -> uvicorn.Server:
    logging.getLogger("uvicorn.error").addFilter(_not_a_simulated_drop)
    config = uvicorn.Config(create_app(state), log_level=log_level, access_log=False, lifespan="off")
    return uvicorn.Server(config)


@contextmanager
def running_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock = SYSTEM_CLOCK,
    own_process: bool = False,
    **options: Any,
) -> Iterator[SimulatorHandle]:
    """Start the simulator in a background thread (port 0: a free one) and stop it on exit.

    `own_process`: run it in a child process instead, as a real provider runs apart from its callers. A
    busy caller process then cannot delay the provider's clock: with a thread, requests queued behind the
    caller's own work are admitted late and in a bunch, and a sliding window sees a burst that never left
    the callers."""
    if own_process:
        with _child_simulator(host, port, options) as handle:
            yield handle
        return
    state = make_state(SimOptions(**options), clock=clock)
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


def serve_forever(*, host: str, port: int, log_level: str = "info", **options: Any) -> None:
    state = make_state(SimOptions(**options))
    server = _server(state, log_level)
    server.run(sockets=[_bind(host, port)])


_CHILD = "import json, sys; from stepgraph.local.simulator.server import serve_forever; serve_forever(**json.load(sys.stdin))"


@contextmanager
def _child_simulator(host: str, port: int, options: dict[str, Any]) -> Iterator[SimulatorHandle]:
    import json
    import subprocess
    import sys

    make_state(SimOptions(**options))  # bad options fail here, with the caller's traceback
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    sock.close()  # the child binds it again (SO_REUSEADDR); a race for a fresh ephemeral port is unlikely
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, text=True)
    assert child.stdin is not None
    child.stdin.write(json.dumps({"host": host, "port": port, "log_level": "warning", **options}))
    child.stdin.close()
    handle = SimulatorHandle(f"http://{host}:{port}", None)
    deadline = time.monotonic() + 30
    while True:
        try:
            handle.stats()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or child.poll() is not None:
                child.kill()
                raise RuntimeError("the simulator process did not start within 30 s") from None
            time.sleep(0.05)
    try:
        yield handle
    finally:
        child.terminate()
        child.wait(timeout=10)
