"""`stepgraph plan`'s forecast against real local runs: for two graphs and three batch sizes, the requests and
the wall time a run takes are within 15% of the forecast made from a sample of the graph and the limits.

Time-scaled: a UTC day lasts 4 s and each provider allows 4 requests a day, so every batch spans two to four
days and its wall time is the days' windows (what the forecast is for), not the local stack's own speed. The two
graphs run side by side on two provider accounts; the samples run on a third, with no limit in the way.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stepgraph.cli.plan import build_report
from stepgraph.local.pool import SimProvider, simulator_spec, stack_env
from stepgraph.local.sample import run_batch, sample_on
from stepgraph.local.simulator import running_simulator
from stepgraph.local.stack import LocalStack, local_stack
from stepgraph.planning.aws_cost import load_prices
from stepgraph.providers.table import ProviderTable
from stepgraph.schemas import RunConfig
from stepgraph.usage import layout

DAY_S = 4.0
SCALE = DAY_S / 86_400
RPD = 4
PROVIDERS = (
    SimProvider("openrouter", rpd=RPD),
    SimProvider("groq", rpd=RPD),
    SimProvider("nvidia"),  # the samples': no limit
)
GRAPHS = {"fanout": "openrouter", "document_pipeline": "groq"}
SIZES = (2, 3, 4)  # 8, 12 and 16 requests at four calls an item: two, three and four days
TOLERANCE = 0.15
# Wall time within 15% holds on a quiet machine only: on a 2-core host at load 6-9 single runs of this
# batch vary by 2-4 s (Lambda workers, moto's Step Functions, the limiter's table all share the cores), more
# than 15% of a 6-16 s run. It also takes about 100 s, most of the CI budget left. Run it on purpose.
pytestmark = pytest.mark.skipif(
    os.environ.get("STEPGRAPH_TIMING_TESTS") != "1",
    reason="timing check of the forecast (~100 s, needs an idle machine): STEPGRAPH_TIMING_TESTS=1 runs it",
)


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[LocalStack, ProviderTable]]:
    with running_simulator(providers=simulator_spec(PROVIDERS), time_scale=SCALE) as sim:
        env = stack_env(sim, PROVIDERS) | {"STEPGRAPH_TIME_SCALE": str(SCALE), "STEPGRAPH_STEP_MARGIN_S": "1"}
        table = ProviderTable.model_validate(json.loads(env["STEPGRAPH_PROVIDERS"]))
        with local_stack(env=env) as st:
            yield st, table


def items(n: int) -> list[dict[str, Any]]:
    return [{"text": f"Ticket {i}: the invoice is wrong.", "max_rounds": 1} for i in range(n)]


def deployment(table: ProviderTable, provider: str) -> str:
    return f"{provider}:{next(iter(table.providers[provider].models))}"


def check_graph(
    st: LocalStack, table: ProviderTable, graph: str, provider: str, sample: Any, rows: list[dict[str, Any]]
) -> None:
    prices = load_prices()
    for n in SIZES:
        config = RunConfig(models=[deployment(table, provider)], max_concurrency=10)
        # The forecast takes the day's quota as unused: the previous batch may have spent some of today's.
        time.sleep(DAY_S - time.time() % DAY_S + 0.05)
        start = time.time()
        report = build_report(n, config, table, prices, measured=sample, start=start, time_scale=SCALE)
        arn, wall = run_batch(st, graph, items(n), config.model_dump(exclude_none=True), timeout_s=120)
        name = arn.rsplit(":", 1)[-1]
        requests = len(list(layout.s3_records(st.client("s3"), st.bucket, execution=name)))
        rows.append(
            {
                "graph": graph,
                "items": n,
                "requests": requests,
                "forecast_requests": report["requests"],
                "wall_s": round(wall, 2),
                "forecast_wall_s": report["free_only"]["wall_s"],
                "days": len(report["free_only"]["days"]),
            }
        )


def test_the_forecast_matches_local_runs_within_15_percent(stack: tuple[LocalStack, ProviderTable]) -> None:
    st, table = stack
    rows: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    # The samples first, one at a time (each on its own the way `stepgraph plan` runs it).
    sample_config = {"models": [deployment(table, "nvidia")], "max_concurrency": 3}
    samples = {graph: sample_on(st, graph, items(3), sample_config) for graph in GRAPHS}

    def run(graph: str, provider: str) -> None:
        try:
            check_graph(st, table, graph, provider, samples[graph], rows)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in GRAPHS.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    assert len(rows) == len(GRAPHS) * len(SIZES)
    for row in rows:
        assert row["days"] >= 2, row  # the limits, not the machine, set the pace
        assert abs(row["requests"] - row["forecast_requests"]) <= TOLERANCE * row["forecast_requests"], row
        assert abs(row["wall_s"] - row["forecast_wall_s"]) <= TOLERANCE * row["forecast_wall_s"], rows
