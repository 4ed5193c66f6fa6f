"""Create the limiter table where the stack does not (local runs, tests)."""

from __future__ import annotations

import contextlib
from typing import Any

from stepgraph import resources


def ensure_limiter_table(client: Any, name: str) -> None:
    """`pk` (S) partition key, no sort key, on-demand, TTL on `ttl`; a no-op when it exists."""
    try:
        client.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": resources.LIMITER_PARTITION_KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": resources.LIMITER_PARTITION_KEY, "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    # DynamoDB Local versions without TTL support: expiry is an optimisation, not correctness.
    with contextlib.suppress(client.exceptions.ClientError):
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": resources.LIMITER_TTL_ATTRIBUTE},
        )
