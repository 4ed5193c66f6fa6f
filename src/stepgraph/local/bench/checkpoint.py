"""Benchmark: S3 requests per superstep and put/get_tuple latency, S3Saver vs DynamoDBSaver (both on moto)."""

from __future__ import annotations

import operator
import statistics
import time
from typing import Annotated, Any, TypedDict

import typer

from stepgraph.local.bench.report import BenchResult, print_result


class _State(TypedDict):
    topic: str
    notes: Annotated[list[str], operator.add]


def _graph() -> Any:
    from langgraph.graph import END, START, StateGraph

    def node(name: str) -> Any:
        return lambda state: {"notes": [f"{name}:{state['topic']}"]}

    g = StateGraph(_State)
    for name in ("plan", "left", "right", "merge"):
        g.add_node(name, node(name))
    g.add_edge(START, "plan")
    g.add_edge("plan", "left")
    g.add_edge("plan", "right")
    g.add_edge(["left", "right"], "merge")
    g.add_edge("merge", END)
    return g


def _count(client: Any) -> list[int]:
    counter = [0]

    def hook(**_: Any) -> None:
        counter[0] += 1

    client.meta.events.register("before-call", hook)
    return counter


def _measure(saver: Any, counter: list[int], items: int) -> dict[str, float]:
    from langgraph.checkpoint.base import empty_checkpoint

    graph = _graph().compile(checkpointer=saver)
    start_calls = counter[0]
    supersteps = 0
    for i in range(items):
        cfg = {"configurable": {"thread_id": f"item-{i}"}}
        graph.invoke({"topic": str(i), "notes": []}, cfg)
        supersteps += len(list(saver.list(cfg)))
    # list() above costs requests too: measure it apart and take it out.
    list_calls = counter[0]
    for i in range(items):
        list(saver.list({"configurable": {"thread_id": f"item-{i}"}}))
    list_cost = counter[0] - list_calls
    run_calls = list_calls - start_calls - list_cost
    puts, gets = [], []
    for i in range(items):
        cfg = {"configurable": {"thread_id": f"lat-{i}", "checkpoint_ns": ""}}
        t = time.perf_counter()
        saver.put(cfg, empty_checkpoint(), {"source": "loop", "step": i}, {})
        puts.append(time.perf_counter() - t)
        t = time.perf_counter()
        saver.get_tuple({"configurable": {"thread_id": f"item-{i}"}})
        gets.append(time.perf_counter() - t)
    puts.sort()
    gets.sort()
    return {
        "requests_per_superstep": run_calls / supersteps,
        "put_p50": statistics.median(puts) * 1000,
        "put_p99": puts[max(0, int(len(puts) * 0.99) - 1)] * 1000,
        "get_p50": statistics.median(gets) * 1000,
        "get_p99": gets[max(0, int(len(gets) * 0.99) - 1)] * 1000,
    }


def run(items: int = 50) -> BenchResult:
    import boto3
    from langgraph_checkpoint_aws.checkpoint.dynamodb.saver import DynamoDBSaver
    from moto import mock_aws

    from stepgraph.checkpoint import S3Saver

    result = BenchResult("checkpoint", f"stepgraph bench checkpoint --items {items}")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        ours = _measure(S3Saver("bench", client=s3), _count(s3), items)
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="checkpoints",
            AttributeDefinitions=[
                {"AttributeName": "PK", "AttributeType": "S"},
                {"AttributeName": "SK", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "PK", "KeyType": "HASH"},
                {"AttributeName": "SK", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        theirs_saver = DynamoDBSaver("checkpoints", region_name="us-east-1")
        theirs = _measure(theirs_saver, _count(theirs_saver.client), items)
    label = "DynamoDBSaver"
    result.add(
        "requests per superstep",
        ours["requests_per_superstep"],
        "calls",
        baseline=theirs["requests_per_superstep"],
        baseline_label=label,
    )
    for k, name in (
        ("put_p50", "put p50"),
        ("put_p99", "put p99"),
        ("get_p50", "get_tuple p50"),
        ("get_p99", "get_tuple p99"),
    ):
        result.add(name, ours[k], "ms", baseline=theirs[k], baseline_label=label)
    result.notes.append(
        f"{items} threads of a 4-node graph with a parallel fan-out (4 supersteps each), both savers on moto; "
        "requests counted with a botocore hook; moto latency is not AWS latency, the request count is what carries over."
    )
    return result


def cli(items: int = typer.Option(50, min=1, help="Threads (graph runs) per saver")) -> None:
    print_result(run(items))
