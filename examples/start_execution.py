"""Start a stepgraph batch with boto3 and wait for it — against AWS or `stepgraph local up`.

python examples/start_execution.py STATE_MACHINE_ARN BUCKET [--endpoint-url http://127.0.0.1:5000]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

import boto3

parser = argparse.ArgumentParser()
parser.add_argument("state_machine_arn")
parser.add_argument("bucket")
parser.add_argument("--endpoint-url")
parser.add_argument("--items", default=str(Path(__file__).parent / "items" / "tickets.jsonl"))
parser.add_argument("--graph", default="document_pipeline")
args = parser.parse_args()

s3 = boto3.client("s3", endpoint_url=args.endpoint_url)
sfn = boto3.client("stepfunctions", endpoint_url=args.endpoint_url)

name = f"sdk-{uuid.uuid4().hex[:8]}"
items = [json.loads(line) for line in Path(args.items).read_text().splitlines() if line.strip()]
key = f"items/{name}/items.json"
s3.put_object(
    Bucket=args.bucket, Key=key, Body=json.dumps(items).encode()
)  # a JSON array: Distributed Map reads it
execution = sfn.start_execution(
    stateMachineArn=args.state_machine_arn,
    name=name,
    input=json.dumps({"graph": args.graph, "items_s3": {"bucket": args.bucket, "key": key}}),
)["executionArn"]
print("started", execution)
while (desc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
    time.sleep(2)
print(desc["status"], desc.get("output") or desc.get("cause"))
