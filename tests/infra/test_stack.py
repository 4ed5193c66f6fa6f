"""The synthesized template: resources and their settings, least privilege, cdk-nag, cfn-lint, context."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra import nag
from infra.context import ContextError, load
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


def deployed_definition(template: Template) -> dict[str, Any]:
    (sm,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    return json.loads(sm["Properties"]["DefinitionString"])


def test_state_machine_definition_is_the_asl_file_with_every_substitution(template: Template) -> None:
    (sm,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    props = sm["Properties"]
    # Inline in the template (not an S3 asset), so cfn-lint and checkov see the definition.
    assert "DefinitionS3Location" not in props
    text = resources.statemachine_text()
    wanted = set(re.findall(r"\$\{(\w+)\}", text))
    assert wanted == set(resources.ASL_SUBSTITUTIONS) == set(props["DefinitionSubstitutions"])
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert (
        props["LoggingConfiguration"]["Level"] == "ALL"
        and props["LoggingConfiguration"]["IncludeExecutionData"] is False
    )
    definition = deployed_definition(template)
    assert definition["States"] == json.loads(text)["States"]
    assert definition["TimeoutSeconds"] == 30 * 86_400  # max_run_days' default


def test_max_run_days_sets_the_execution_timeout(layer_dir: Path) -> None:
    stack, _ = synth(layer_dir, max_run_days=365)
    assert deployed_definition(Template.from_stack(stack))["TimeoutSeconds"] == 365 * 86_400


@pytest.mark.parametrize("value", ["0", "366", "thirty"])
def test_max_run_days_out_of_range_is_one_clear_line(value: str) -> None:
    with pytest.raises(ContextError, match=r"^CDK context 'max_run_days': .* \(got") as info:
        load({"max_run_days": value}.get)
    assert "\n" not in str(info.value)


def test_graph_step_reserved_concurrency_comes_from_context(layer_dir: Path) -> None:
    stack, _ = synth(layer_dir, graph_step_reserved_concurrency=20)
    fns = Template.from_stack(stack).find_resources("AWS::Lambda::Function")
    reserved = {k: f["Properties"].get("ReservedConcurrentExecutions") for k, f in fns.items()}
    assert [v for k, v in reserved.items() if "graphstep" in k] == [20]
    # Usage compaction runs alone by design (one at a time); every other function leaves the account's pool.
    others = {k: v for k, v in reserved.items() if "graphstep" not in k and "Compaction" not in k}
    assert others and all(v is None for v in others.values())
    assert [v for k, v in reserved.items() if "Compaction" in k] == [1]


def test_the_state_machine_may_write_failure_records_and_nothing_else(template: Template) -> None:
    ((sm),) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    bucket_id = sm["Properties"]["DefinitionSubstitutions"]["DataBucketName"]["Ref"]
    assert bucket_id.startswith("DataBucket")  # the data bucket, not its access-log bucket
    role = {"Ref": sm["Properties"]["RoleArn"]["Fn::GetAtt"][0]}
    failures = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{resources.PREFIX_FAILURES}*"]]}
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "Roles": Match.array_with([role]),
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [{"Action": "s3:PutObject", "Effect": "Allow", "Resource": failures}]
                )
            },
        },
    )
    statements = [
        st
        for p in template.find_resources("AWS::IAM::Policy").values()
        if role in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    writes = [
        (a, st["Resource"])
        for st in statements
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
        if a.startswith("s3:") and not a.startswith(("s3:Get", "s3:List"))
    ]
    map_runs = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{resources.PREFIX_MAP_RUNS}*"]]}
    assert sorted(writes, key=json.dumps) == sorted(
        [
            ("s3:PutObject", failures),
            ("s3:PutObject", map_runs),  # the Distributed Map's ResultWriter
            ("s3:AbortMultipartUpload", map_runs),
        ],
        key=json.dumps,
    )


def test_distributed_items_record_their_failure_in_the_data_bucket_and_always_end() -> None:
    definition = json.loads(resources.statemachine_text())
    states = definition["States"]["DistributedMap"]["ItemProcessor"]["States"]
    assert states["DistItemFailed"]["Next"] == states["DistItemUnexpected"]["Next"] == "DistRecordFailure"
    record = states["DistRecordFailure"]
    assert record["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    assert record["Parameters"]["Bucket"] == "${DataBucketName}"
    assert record["Parameters"]["Key.$"].startswith(
        f"States.Format('{resources.PREFIX_FAILURES}{{}}/{{}}.json'"
    )
    # The object itself: States.JsonToString is stored as a JSON string literal by some interpreters.
    assert record["Parameters"]["Body.$"] == "$.record"
    assert record["Catch"][0]["ErrorEquals"] == ["States.ALL"] and record.get("End") is True
    lost = states[record["Catch"][0]["Next"]]  # a record that cannot be written still ends the item
    assert lost["Type"] == "Pass" and lost["End"] is True
    # InlineMap keeps its records in the execution output.
    inline = definition["States"]["InlineMap"]["ItemProcessor"]["States"]
    assert inline["ItemFailed"]["End"] is True and "DistRecordFailure" not in inline


def test_alarms_dashboard_and_outputs(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 10
    spend = [a for a in alarms.values() if "daily budget" in a["Properties"]["AlarmDescription"]]
    assert sorted(a["Properties"]["Threshold"] for a in spend) == [4.0, 4.75]  # 80% and 95% of $5
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    outputs = template.find_outputs("*")
    assert {"StateMachineArn", "DataBucketName", "AthenaWorkGroup", "GlueDatabase", "DashboardUrl"} <= set(
        outputs
    )
    template.resource_count_is("AWS::SecretsManager::Secret", 3)  # two providers' keys, one management key


def test_spend_alarms_sum_over_the_utc_wall_clock_day(template: Template) -> None:
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    spend = [
        a["Properties"] for a in alarms.values() if "daily budget" in a["Properties"]["AlarmDescription"]
    ]
    assert len(spend) == 2
    for props in spend:
        # "Today" is the budget guard's UTC day, not the last 24 hours (CloudWatch's sliding default).
        assert props["EvaluationWindow"] == {"WallClockWindow": {"Timezone": "UTC"}}
        stats = [m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m]
        assert stats and all(st["Period"] == 86_400 and st["Stat"] == "Sum" for st in stats)
        assert [st["Metric"]["MetricName"] for st in stats] == ["CreditsSpentUSD"]
        assert props["EvaluationPeriods"] == 1
    # Only the day-sized spend alarms take the wall clock: the others watch the last minutes.
    others = [
        a["Properties"] for a in alarms.values() if "daily budget" not in a["Properties"]["AlarmDescription"]
    ]
    assert others and not any("EvaluationWindow" in p for p in others)


def test_an_alarm_fires_when_the_credits_poller_stops_reporting_for_an_hour(template: Template) -> None:
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "CreditsKnown",
            "Namespace": "StepGraph",
            "Dimensions": [{"Name": "service", "Value": resources.SERVICE_NAME}],
            "Statistic": "SampleCount",
            "Period": 3600,
            "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",  # no data at all is the poller being down
            "AlarmActions": Match.any_value(),
        },
    )


def test_the_dashboard_shows_spend_per_utc_day_and_whether_the_balance_is_known(template: Template) -> None:
    (board,) = template.find_resources("AWS::CloudWatch::Dashboard").values()
    body = board["Properties"]["DashboardBody"]
    text = "".join(p if isinstance(p, str) else "region" for p in body["Fn::Join"][1])
    widgets = json.loads(text)["widgets"]
    daily = [
        w["properties"] for w in widgets if w["properties"].get("title", "").startswith("Spend per UTC day")
    ]
    assert len(daily) == 1 and daily[0]["period"] == 86_400
    assert [a["value"] for a in daily[0]["annotations"]["horizontal"]] == [4.0, 4.75]
    assert "CreditsKnown" in text and "SpentTodayUSD" in text


def test_every_acknowledgment_suppresses_a_real_finding(layer_dir: Path) -> None:
    with pytest.raises(Exception, match="ValidationFailed") as info:
        synth(layer_dir, acknowledge=False)
    report = str(info.value)
    for finding in {**nag.ACKNOWLEDGED, **nag.FINDINGS}:
        assert f"AwsSolutions::{finding}" in report, f"{finding} is acknowledged but never found"


def test_cfn_lint_has_no_errors(layer_dir: Path, tmp_path: Path) -> None:
    stack, asm = synth(layer_dir)
    path = Path(asm.directory) / f"{stack.artifact_id}.template.json"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"daily_budget_usd": -1}, "daily_budget_usd"),
        ({"alarm_email": "not-an-email"}, "alarm_email"),
        ({"log_retention_days": 4}, "log_retention_days"),
        ({"removal_policy": "sometimes"}, "removal_policy"),
        ({"map_concurrency": "0"}, "map_concurrency"),
        ({"graphs": '{"tickets": "not a function path"}'}, "graphs.tickets"),
        ({"graphs": "[1, 2]"}, "graphs"),
    ],
)
def test_bad_context_values_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ContextError, match=rf"CDK context '{message}'"):
        load(values.get)


def test_context_graphs_reach_the_functions_as_stepgraph_graphs() -> None:
    settings = load({"graphs": '{"tickets": "my_graphs.tickets:build_graph"}', "map_concurrency": "25"}.get)
    env = settings.runtime_env()
    assert json.loads(env["STEPGRAPH_GRAPHS"]) == {"tickets": "my_graphs.tickets:build_graph"}
    assert env["STEPGRAPH_MAP_CONCURRENCY"] == "25"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"daily_budget": "2"}, r"CDK context 'daily_budget' is not a known key \(did you mean 'daily_budget_usd'\? known: alarm_email, "),
        ({"log_retention": "7"}, r"did you mean 'log_retention_days'\?"),
        ({"limits_profile": "gold"}, r"CDK context 'limits_profile': unknown limit profile 'gold' \(known profiles: "),
        ({"providers": "{not json"}, r"CDK context 'providers': is neither JSON nor a file"),
        ({"providers": '{"providers": {}, "chain": []}'}, r"CDK context 'providers': chain: List should have at least 1"),
    ],
)  # fmt: skip
def test_unknown_keys_and_every_documented_key_are_checked(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ContextError, match=message):
        load(values.get, values.keys())


def test_cdk_keys_and_good_values_pass() -> None:
    ctx = {"@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:enable-path-metadata": True,
           "limits_profile": "openrouter-free-1000", "providers": None}  # fmt: skip
    assert load(ctx.get, ctx.keys()).limits_profile == "openrouter-free-1000"


def app_run(layer_dir: Path, tmp_path: Path, context: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """app.py as `npx cdk synth` runs it (context in CDK_CONTEXT_JSON), without the Makefile's environment."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("JSII_")}
    ctx = {"layer_dir": str(layer_dir), "duckdb_layer_dir": str(layer_dir / "duckdb"), **context}
    env |= {"CDK_CONTEXT_JSON": json.dumps(ctx), "CDK_OUTDIR": str(tmp_path),
            "JSII_DEPRECATED": "fail"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_app_bad_context_is_one_line_without_banner(layer_dir: Path, tmp_path: Path) -> None:
    res = app_run(layer_dir, tmp_path, {"log_retention_days": 2})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: CDK context 'log_retention_days': Input should be 1, 3, 5, 7, 14, 30, 60, 90, 180 or 365 (got 2)"
    ]


def test_app_without_a_built_layer_is_one_line(tmp_path: Path) -> None:
    res = app_run(tmp_path / "no-layer", tmp_path, {})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"error: CDK context 'layer_dir': {tmp_path}/no-layer/python does not exist "
        "(run `make layer` first, or point -c layer_dir= at a built layer)"
    ]


def test_app_synthesizes_quietly(layer_dir: Path, tmp_path: Path) -> None:
    """No jsii Node banner and no deprecated API (JSII_DEPRECATED=fail turns one into an error)."""
    res = app_run(layer_dir, tmp_path, {})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "!!" not in res.stderr and "deprecated" not in res.stderr.lower(), res.stderr[-2000:]
