"""`stepgraph local up`: a moto server and the simulator on loopback, with the stack's resources, so boto3
or the AWS CLI (`--endpoint-url`) can start and describe executions exactly as against AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stepgraph.local.simulator import DEV_KEY, running_simulator
from stepgraph.local.stack import local_stack


@dataclass
class Endpoint:
    url: str
    simulator_url: str
    state_machine_arn: str
    bucket: str


@contextmanager
def local_endpoint(
    *, port: int = 5000, rpm: int = 20, rpd: int = 1000, time_scale: float = 0.05
) -> Iterator[Endpoint]:
    from stepgraph.local import map_runs
    from stepgraph.local.ports import ensure_free

    ensure_free(port)
    map_runs.install()  # per-item child executions of a Distributed Map, as on AWS
    with running_simulator(rpm=rpm, rpd=rpd, time_scale=time_scale) as sim:
        env = {
            "STEPGRAPH_TIME_SCALE": str(time_scale),
            "STEPGRAPH_STEP_MARGIN_S": "1",
            "STEPGRAPH_LIMIT_MARGIN": "0.05",
            "STEPGRAPH_OPENROUTER_BASE_URL": sim.base_url,
            "STEPGRAPH_OLLAMA_BASE_URL": sim.ollama_base_url,
            "OPENROUTER_API_KEY": f"local={DEV_KEY}",
            "OLLAMA_API_KEY": f"local={DEV_KEY}",
            "STEPGRAPH_LIMITS_OVERRIDES": json.dumps({"rpm": {"capacity": rpm}, "rpd": {"capacity": rpd}}),
        }
        with local_stack(use_dynamodb_local=False, env=env, port=port) as st:
            yield Endpoint(st.endpoint_url, sim.base_url, st.state_machine_arn, st.bucket)
