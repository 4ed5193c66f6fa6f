"""Items of the limiter table behind a tiny interface: DynamoDB for real, a dict for unit tests.

`apply(op)` is one conditional write (UpdateItem or, for leases, a versioned PutItem) that returns
the item after the write, or the item as it was when the condition failed
(`ReturnValuesOnConditionCheckFailure=ALL_OLD`), so a refusal or a retry needs no extra read.
"""

from __future__ import annotations

import json
import random
import threading
import time
from decimal import Decimal
from typing import Any, Protocol

from stepgraph.limiter.algorithm import BusyOp, CountOp, IdleOp, LeaseOp, Op, State
from stepgraph.limiter.limits import LimiterUnavailable

PK = "pk"


class Store(Protocol):
    def get(self, pk: str) -> State | None: ...

    def apply(self, op: Op) -> tuple[bool, State | None]:
        """(True, item after) or (False, item as it was)."""

    def add(self, pk: str, field: str, delta: float, *, if_equals: float | None = None) -> bool:
        """Atomically add `delta` to a number (no-op for a missing item); optionally only if it equals a value."""


class MemoryStore:
    """In-process store with the same semantics, for unit tests and property tests."""

    def __init__(self) -> None:
        self.items: dict[str, State] = {}
        self.writes = 0
        self._lock = threading.Lock()

    def get(self, pk: str) -> State | None:
        with self._lock:
            item = self.items.get(pk)
            return json.loads(json.dumps(item)) if item else None

    def apply(self, op: Op) -> tuple[bool, State | None]:
        with self._lock:
            self.writes += 1
            item = self.items.get(op.pk)
            if not op.check(item):
                return False, json.loads(json.dumps(item)) if item else None
            self.items[op.pk] = op.apply(item)
            return True, json.loads(json.dumps(self.items[op.pk]))

    def add(self, pk: str, field: str, delta: float, *, if_equals: float | None = None) -> bool:
        with self._lock:
            self.writes += 1
            item = self.items.get(pk)
            if item is None or field not in item:
                return False
            if if_equals is not None and abs(float(item[field]) - if_equals) > 1e-9:
                return False
            item[field] = item[field] + delta
            return True


def _num(v: float) -> dict[str, str]:
    return {"N": repr(float(v)) if isinstance(v, float) else str(v)}


def _from_ddb(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _from_ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_ddb(v) for v in value]
    return value


def _decode(raw: Any) -> State | None:
    if not raw:
        return None
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    item = {k: _from_ddb(des.deserialize(v)) for k, v in raw.items()}
    state = item.pop("s", None)
    return {**item, **(state or {})}


class DynamoDBStore:
    """The limiter table: `pk` (S), TTL attribute `ttl`; `tat`/`count` as numbers, leases in `s`."""

    RETRYABLE = (
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    )

    def __init__(
        self, table_name: str, client: Any, *, max_attempts: int = 5, base_delay_s: float = 0.02
    ) -> None:
        self.table_name = table_name
        self.client = client
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        """Bounded retries with full jitter on throttling and service errors, then fail closed."""
        from botocore.exceptions import BotoCoreError, ClientError

        last: Exception | None = None
        for attempt in range(self.max_attempts):
            try:
                return fn(**kwargs)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if code == "ConditionalCheckFailedException":
                    raise  # an answer, not a failure: the callers read the item from it
                # A 5xx without a known code (e.g. a proxy's 503 page) is as transient as a named one.
                if code not in self.RETRYABLE and status < 500:
                    raise LimiterUnavailable(
                        f"DynamoDB table {self.table_name} refused the call ({code}: "
                        f"{exc.response.get('Error', {}).get('Message', '')}); nothing was granted",
                        hint="check the table exists and the role may use it",
                    ) from exc
                last = exc
            except BotoCoreError as exc:  # connection errors, timeouts
                last = exc
            time.sleep(random.uniform(0, self.base_delay_s * 2**attempt))
        raise LimiterUnavailable(
            f"DynamoDB table {self.table_name} kept failing ({last}); nothing was granted",
            hint="check the table exists and is reachable; the step will be retried",
        )

    def get(self, pk: str) -> State | None:
        resp = self._call(
            self.client.get_item, TableName=self.table_name, Key={PK: {"S": pk}}, ConsistentRead=True
        )
        return _decode(resp.get("Item"))

    def _update_args(self, op: Op) -> dict[str, Any]:
        names = {"#t": "ttl"}
        values: dict[str, Any] = {":ttl": _num(op.ttl)}
        if isinstance(op, BusyOp):
            expr, cond = "SET tat = tat + :inc, #t = :ttl", "tat BETWEEN :now AND :hmax"
            values.update({":inc": _num(op.inc), ":now": _num(op.now), ":hmax": _num(op.now + op.horizon)})
        elif isinstance(op, IdleOp):
            expr, cond = "SET tat = :new, #t = :ttl", "attribute_not_exists(tat) OR tat < :now"
            values.update({":new": _num(op.now + op.inc), ":now": _num(op.now)})
        else:
            assert isinstance(op, CountOp), type(op).__name__
            expr = "ADD #c :inc SET #t = :ttl"
            cond = "attribute_not_exists(#c) OR #c <= :room"
            names["#c"] = "count"
            values.update({":inc": _num(int(op.inc)), ":room": _num(op.cap - int(op.inc))})
        return {
            "UpdateExpression": expr,
            "ConditionExpression": cond,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def apply(self, op: Op) -> tuple[bool, State | None]:
        from boto3.dynamodb.types import TypeSerializer
        from botocore.exceptions import ClientError

        try:
            if isinstance(op, LeaseOp):
                item: dict[str, Any] = {PK: {"S": op.pk}, "v": _num(op.version + 1), "ttl": _num(op.ttl)}
                item["s"] = TypeSerializer().serialize(json.loads(json.dumps(op.state), parse_float=Decimal))
                cond: dict[str, Any] = (
                    {"ConditionExpression": "attribute_not_exists(v)"}
                    if op.version == 0
                    else {
                        "ConditionExpression": "v = :v",
                        "ExpressionAttributeValues": {":v": _num(op.version)},
                    }
                )
                self._call(
                    self.client.put_item,
                    TableName=self.table_name,
                    Item=item,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **cond,
                )
                return True, {**op.state, "v": op.version + 1}
            resp = self._call(
                self.client.update_item,
                TableName=self.table_name,
                Key={PK: {"S": op.pk}},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **self._update_args(op),
            )
            return True, _decode(resp.get("Attributes"))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False, _decode(exc.response.get("Item"))
            raise

    def add(self, pk: str, field: str, delta: float, *, if_equals: float | None = None) -> bool:
        from botocore.exceptions import ClientError

        cond = "attribute_exists(#f)" + (" AND #f = :eq" if if_equals is not None else "")
        values = {":d": _num(delta)} | ({":eq": _num(if_equals)} if if_equals is not None else {})
        try:
            self._call(
                self.client.update_item,
                TableName=self.table_name,
                Key={PK: {"S": pk}},
                UpdateExpression="ADD #f :d",
                ConditionExpression=cond,
                ExpressionAttributeNames={"#f": field},
                ExpressionAttributeValues=values,
            )
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise


class LazyStore:
    """`store`: the injected `_store`, or a `DynamoDBStore` over `table_name` with the injected `_client`
    (boto3's default client when none), built once on first use."""

    table_name: str
    _client: Any
    _store: Store | None

    @property
    def store(self) -> Store:
        if self._store is None:
            if self._client is None:
                import boto3

                self._client = boto3.client("dynamodb")
            self._store = DynamoDBStore(self.table_name, self._client)
        return self._store
