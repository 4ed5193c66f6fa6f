"""The state machine in the synthesized template: the ASL file inline with every substitution, its execution
timeout from CDK context, and the failure records (and nothing else) it may write to the data bucket."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.context import ContextError, load
from stepgraph import resources
from tests.infra.conftest import synth


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
