"""The simulator's own endpoints under `/_sim/`: faults, outages, delisting, keys, stats, the request log."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stepgraph.local.simulator.dialects import error
from stepgraph.local.simulator.state import Fault, SimState


def _error(status: int, message: str) -> JSONResponse:
    return error("openrouter", status, message)


async def sim_faults(request: Request) -> Response:
    state: SimState = request.app.state.sim
    try:
        raw = json.loads(await request.body())
        faults = [Fault.from_json(f) for f in raw.get("next", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        return _error(400, f"bad fault spec: {exc}")
    with state.lock:
        state.faults.extend(faults)
        queued = len(state.faults)
    return JSONResponse({"queued": queued})


async def sim_reset(request: Request) -> Response:
    request.app.state.sim.reset()
    return JSONResponse({"reset": True})


async def sim_revoke(request: Request) -> Response:
    ok = request.app.state.sim.accounts.revoke(request.path_params["key"])
    return JSONResponse({"revoked": ok}, status_code=200 if ok else 404)


async def sim_stats(request: Request) -> Response:
    return JSONResponse(request.app.state.sim.stats())


async def sim_requests(request: Request) -> Response:
    state: SimState = request.app.state.sim
    with state.lock:
        return JSONResponse(list(state.log))


async def sim_down(request: Request) -> Response:
    """`{"for_s": 5, "after_s": 0, "status": 503 | 502 | "connection"}`: the provider is down for a while."""
    state: SimState = request.app.state.sim
    try:
        outage = state.go_down(json.loads(await request.body()))
    except (ValueError, TypeError, AttributeError) as exc:
        return _error(400, f"bad outage spec: {exc}")
    return JSONResponse({"down_from": outage.start, "down_until": outage.end, "status": outage.status})


async def sim_delist(request: Request) -> Response:
    """The model is served no more (404 "model not found"), as when a `:free` promotion ends."""
    request.app.state.sim.delist(request.path_params["model"])
    return JSONResponse({"delisted": request.path_params["model"]})
