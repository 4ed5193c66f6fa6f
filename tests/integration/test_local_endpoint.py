"""`stepgraph local up`: boto3 against the local endpoint, exactly as against AWS; `stepgraph start/status`."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import boto3
from typer.testing import CliRunner

from stepgraph.cli import app
from stepgraph.local.endpoint import local_endpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_boto3_and_the_cli_drive_the_local_endpoint(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    rows = [{"text": f"row {i}", "max_rounds": 1} for i in range(3)] + [{"max_rounds": 1}]  # no text
    items.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with local_endpoint(port=free_port()) as ep:
        runner = CliRunner()
        res = runner.invoke(
            app,
            [
                "start",
                ep.state_machine_arn,
                "--items",
                str(items),
                "--bucket",
                ep.bucket,
                "--name",
                "cli-run",
                "--endpoint-url",
                ep.url,
            ],
        )
        assert res.exit_code == 0, res.output
        arn = res.stdout.strip().splitlines()[-1]
        sfn = boto3.client("stepfunctions", endpoint_url=ep.url, region_name="us-east-1")
        deadline = time.monotonic() + 90
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
        res = runner.invoke(app, ["status", arn, "--endpoint-url", ep.url])
        report = json.loads(res.stdout)
        assert (
            report["status"] == "SUCCEEDED"
            and report["items_done"] == 3
            and report["provider_attempts"] >= 12
        )
        # The item without text failed; moto's Step Functions wrote its record through this very endpoint.
        assert [(f["item_id"], f["error"]) for f in report["failed_items"]] == [(3, "MissingField")]
        assert report["unaccounted"] == 0
        bad = runner.invoke(
            app,
            [
                "start",
                ep.state_machine_arn,
                "--items",
                str(items),
                "--graph",
                "",
                "--bucket",
                ep.bucket,
                "--endpoint-url",
                ep.url,
            ],
        )
        assert bad.exit_code != 0
