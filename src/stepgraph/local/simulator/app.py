"""The simulator's HTTP app (starlette): one provider, or several mounted under `/{name}`.

A provider answers OpenRouter's paths (`/api/v1/...`) and OpenAI-style ones (`/v1/...`) alike, so any base
URL of the provider table can point at it. The handlers live by concern: chat.py (completions),
account_api.py (OpenRouter's key, credits, generation and model endpoints), admin.py (`/_sim/`).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from stepgraph.local.simulator import account_api, admin
from stepgraph.local.simulator.chat import chat_completions
from stepgraph.local.simulator.providers import PoolState
from stepgraph.local.simulator.state import SimState


def create_app(state: SimState | PoolState) -> Starlette:
    if isinstance(state, PoolState):
        return _pool_app(state)
    routes = [
        Route("/api/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/api/v1/key", account_api.key_info, methods=["GET"]),
        Route("/api/v1/credits", account_api.credits, methods=["GET"]),
        Route("/api/v1/generation", account_api.generation, methods=["GET"]),
        Route("/api/v1/models", account_api.models, methods=["GET"]),
        Route("/v1/models", account_api.models, methods=["GET"]),
        Route("/_sim/faults", admin.sim_faults, methods=["POST"]),
        Route("/_sim/down", admin.sim_down, methods=["POST"]),
        Route("/_sim/models/{model:path}/delist", admin.sim_delist, methods=["POST"]),
        Route("/_sim/reset", admin.sim_reset, methods=["POST"]),
        Route("/_sim/keys/{key}/revoke", admin.sim_revoke, methods=["POST"]),
        Route("/_sim/stats", admin.sim_stats, methods=["GET"]),
        Route("/_sim/requests", admin.sim_requests, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.sim = state
    return app


def _pool_app(pool: PoolState) -> Starlette:
    async def stats(request: Request) -> Response:
        return JSONResponse(pool.stats())

    async def reset(request: Request) -> Response:
        pool.reset()
        return JSONResponse({"reset": True})

    async def listing(request: Request) -> Response:
        return JSONResponse(
            {n: {"header_dialect": s.options.header_dialect} for n, s in pool.providers.items()}
        )

    routes: list[Route | Mount] = [
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/providers", listing, methods=["GET"]),
    ]
    routes += [Mount(f"/{name}", app=create_app(state)) for name, state in pool.providers.items()]
    app = Starlette(routes=routes)
    app.state.sim = pool
    return app
