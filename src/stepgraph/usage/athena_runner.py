"""Run the named queries on real Athena (start, poll, page through the results)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

from stepgraph import resources
from stepgraph.errors import ConfigError, StepGraphError
from stepgraph.usage import sql as usage_sql


class AthenaQueryFailed(StepGraphError):
    """An Athena query ended FAILED or CANCELLED."""


def run_athena(
    *,
    workgroup: str = resources.ATHENA_WORKGROUP,
    database: str = resources.GLUE_DATABASE,
    table: str = resources.USAGE_TABLE,
    queries: list[str] | None = None,
    since: date | None = None,
    client: Any = None,
    poll_s: float = 1.0,
    timeout_s: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, list[dict[str, Any]]]:
    if client is None:
        import boto3

        client = boto3.client("athena")
    available = usage_sql.named_queries()
    unknown = sorted(set(queries or []) - set(available))
    if unknown:
        raise ConfigError(f"unknown query {', '.join(unknown)}", hint=f"known: {', '.join(available)}")
    results = {}
    for name in queries or list(available):
        text = usage_sql.fill(
            available[name], database=database, table=table, since=str(since or "1970-01-01")
        )
        qid = client.start_query_execution(
            QueryString=text, WorkGroup=workgroup, QueryExecutionContext={"Database": database}
        )["QueryExecutionId"]
        waited = 0.0
        while True:
            status = client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                break
            if state in ("FAILED", "CANCELLED"):
                reason = status.get("StateChangeReason", "")
                raise AthenaQueryFailed(f"Athena query {name} ({qid}) {state.lower()}: {reason}")
            if waited >= timeout_s:
                raise AthenaQueryFailed(f"Athena query {name} ({qid}) still {state} after {timeout_s:g} s")
            sleep(poll_s)
            waited += poll_s
        rows: list[dict[str, Any]] = []
        header: list[str] | None = None
        token = None
        while True:
            kwargs = {"QueryExecutionId": qid} | ({"NextToken": token} if token else {})
            page = client.get_query_results(**kwargs)
            for row in page["ResultSet"]["Rows"]:
                values = [c.get("VarCharValue") for c in row["Data"]]
                if header is None:
                    header = [str(v) for v in values]
                    continue
                rows.append(dict(zip(header, values, strict=False)))
            token = page.get("NextToken")
            if not token:
                break
        results[name] = rows
    return results
