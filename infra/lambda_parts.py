"""What the stack's functions share: layers built into a directory (or a stand-in on a fresh clone), and
scheduled invocations whose failed events are retried within the hour and then kept in a queue."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

ROOT = Path(__file__).resolve().parents[1]
# An asynchronous invocation (the schedules') is retried this often within MAX_EVENT_AGE, then dead-lettered.
ASYNC_RETRIES = 2
MAX_EVENT_AGE = Duration.hours(1)


def stand_in_layer() -> Path:
    """A one-file layer, so `cdk synth` works on a fresh clone; its fixed content keeps the asset hash stable."""
    d = Path(tempfile.gettempdir()) / "stepgraph-stand-in-layer"
    (d / "python").mkdir(parents=True, exist_ok=True)
    (d / "python" / "STAND_IN.txt").write_text("stand-in layer: build the real one with `make layer`\n")
    return d


def built_layer(
    scope: Construct, cid: str, layer_dir: str, *, description: str
) -> tuple[lambda_.LayerVersion, bool]:
    """A Python 3.12 x86-64 layer from `layer_dir` (relative to the repository root unless absolute), and
    whether it was built: an unbuilt directory synthesizes against `stand_in_layer()`."""
    path = Path(layer_dir) if Path(layer_dir).is_absolute() else ROOT / layer_dir
    built = path.is_dir()
    layer = lambda_.LayerVersion(
        scope,
        cid,
        code=lambda_.Code.from_asset(str(path if built else stand_in_layer())),
        compatible_runtimes=[lambda_.Runtime.PYTHON_3_12],
        compatible_architectures=[lambda_.Architecture.X86_64],
        description=description,
    )
    return layer, built


def dead_letter_queue(scope: Construct, cid: str) -> sqs.Queue:
    """Where a scheduled function's failed events are kept (two weeks) for a look and a redrive."""
    return sqs.Queue(
        scope,
        cid,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=Duration.days(14),
    )


def async_invoke(dead_letters: sqs.IQueue) -> dict[str, Any]:
    """A function's own settings for asynchronous invocations: the retries, event age and queue of its
    schedule (`lambda_.Function(..., **async_invoke(queue))`)."""
    return {
        "dead_letter_queue": dead_letters,
        "retry_attempts": ASYNC_RETRIES,
        "max_event_age": MAX_EVENT_AGE,
    }


def schedule(
    scope: Construct,
    cid: str,
    function: lambda_.IFunction,
    *,
    description: str,
    when: events.Schedule,
    dead_letters: sqs.IQueue,
    event: events.RuleTargetInput | None = None,
) -> events.Rule:
    """A rule that invokes `function` `when`; an event that cannot be delivered is retried within the hour,
    then kept in `dead_letters` (the function's own asynchronous retries use the same queue)."""
    return events.Rule(
        scope,
        cid,
        description=description,
        schedule=when,
        targets=[
            targets.LambdaFunction(
                function,
                event=event,
                retry_attempts=ASYNC_RETRIES,
                max_event_age=MAX_EVENT_AGE,
                dead_letter_queue=dead_letters,
            )
        ],
    )
