"""A local OpenRouter-compatible provider: limits, 429s, usage and cost, faults on demand.

with running_simulator(rpm=20, time_scale=0.05) as sim:
    ChatOpenAI(base_url=sim.base_url, api_key="sk-sim-dev", max_retries=0, model=...)
"""

from stepgraph.local.simulator.accounts import DEV_KEY, DEV_MANAGEMENT_KEY
from stepgraph.local.simulator.server import SimulatorHandle, running_simulator, serve_forever
from stepgraph.local.simulator.state import SimOptions

__all__ = [
    "DEV_KEY",
    "DEV_MANAGEMENT_KEY",
    "SimOptions",
    "SimulatorHandle",
    "running_simulator",
    "serve_forever",
]
