"""The synthesized template's data resources and functions: the limiter table, the data bucket, the usage lake
as the DDL describes it, the functions and their layers, and each function's least privilege."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match, Template

from stepgraph import resources
from stepgraph.usage import sql as usage_sql
from tests.infra.conftest import synth

ROOT = Path(__file__).resolve().parents[2]


def test_limiter_table(template: Template) -> None:
    template.has_resource_properties(
        "AWS::DynamoDB::GlobalTable",
        {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": True},
            "Replicas": [
                Match.object_like({"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})
            ],
        },
    )


def test_data_bucket_is_private_encrypted_versioned_and_tls_only(template: Template) -> None:
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": Match.any_value(),
            "LoggingConfiguration": Match.any_value(),
            "LifecycleConfiguration": Match.any_value(),
        },
    )
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert policies and all("aws:SecureTransport" in json.dumps(p) for p in policies.values())


def test_usage_lake_matches_the_ddl(template: Template) -> None:
    tables = template.find_resources("AWS::Glue::Table")
    (ti,) = [
        t["Properties"]["TableInput"]
        for t in tables.values()
        if t["Properties"]["TableInput"]["Name"] == resources.USAGE_TABLE
    ]
    ddl = re.findall(r"`(\w+)` (\w+)", usage_sql.ddl("create_table").split("PARTITIONED BY")[0])
    assert [(c["Name"], c["Type"]) for c in ti["StorageDescriptor"]["Columns"]] == ddl
    assert ti["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert ti["Parameters"]["projection.dt.type"] == "date"
    assert (
        ti["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"]
        == "org.apache.hive.hcatalog.data.JsonSerDe"
    )
    template.has_resource_properties(
        "AWS::Athena::WorkGroup",
        {
            "WorkGroupConfiguration": Match.object_like(
                {"BytesScannedCutoffPerQuery": Match.any_value(), "EnforceWorkGroupConfiguration": True}
            ),
        },
    )
    queries = template.find_resources("AWS::Athena::NamedQuery")
    assert len(queries) == len(list((ROOT / "athena/queries").glob("*.sql")))
    assert all("${" not in q["Properties"]["QueryString"] for q in queries.values())


def test_functions_and_layer(template: Template) -> None:
    functions = template.find_resources("AWS::Lambda::Function", {"Properties": {"Runtime": "python3.12"}})
    assert len(functions) == 4  # graph-step, validate-input, credits-poller, usage-compaction
    for fn in functions.values():
        p = fn["Properties"]
        assert p["Architectures"] == ["x86_64"] and p["TracingConfig"] == {"Mode": "Active"}
        assert p["Handler"] == "handler.handler" and p["Layers"]
        env = p["Environment"]["Variables"]
        if resources.COMPACTION_FUNCTION in p["Description"]:
            assert set(env) == {resources.ENV_BUCKET, "POWERTOOLS_SERVICE_NAME"}  # S3 only, no table
            continue
        assert {resources.ENV_BUCKET, resources.ENV_LIMITER_TABLE} <= set(env)
        # What cdk.json says is what the functions run with: the budget guard and the default fan-out.
        assert env["STEPGRAPH_DAILY_BUDGET_USD"] == "5" and env["STEPGRAPH_MAP_CONCURRENCY"] == str(
            resources.DEFAULT_MAX_CONCURRENCY
        )
    template.resource_count_is("AWS::Lambda::LayerVersion", 2)  # dependencies, DuckDB (compaction)
    template.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(15 minutes)"})


def test_graph_step_reserved_concurrency_comes_from_context(layer_dir: Path) -> None:
    stack, _ = synth(layer_dir, graph_step_reserved_concurrency=20)
    fns = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    reserved = {k: f["Properties"].get("ReservedConcurrentExecutions") for k, f in fns.items()}
    assert [v for k, v in reserved.items() if "graphstep" in k] == [20]
    # Usage compaction runs alone by design (one at a time); every other function leaves the account's pool.
    others = {k: v for k, v in reserved.items() if "graphstep" not in k and "Compaction" not in k}
    assert others and all(v is None for v in others.values())
    assert [v for k, v in reserved.items() if "Compaction" in k] == [1]


def _policy_of(template: Template, fragment: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    return [
        st
        for name, p in policies.items()
        if fragment in name
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_least_privilege(template: Template) -> None:
    step = _policy_of(template, "graphstep")
    actions = {a for st in step for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"} <= actions
    assert not any(
        a in ("*", "s3:*", "dynamodb:*") or a.startswith("dynamodb:Delete") or a == "dynamodb:Scan"
        for a in actions
    )
    assert "secretsmanager:GetSecretValue" in actions
    s3_resources = json.dumps(
        [
            st["Resource"]
            for st in step
            if any(
                str(a).startswith("s3:")
                for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
            )
        ]
    )
    for prefix in ("checkpoints/*", "usage/*", "results/*", "items/*"):
        assert prefix in s3_resources
    poller = _policy_of(template, "creditspoller")
    poller_actions = {
        a for st in poller for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
    }
    assert not any(a.startswith("s3:") for a in poller_actions)  # the poller never touches the data
