"""Security rows of the synthesized template: wildcards only from named allow-lists with a reason,
private TLS-only buckets, and no secret values in the functions' environment (keys only through the
provider secrets). Each check is a function over the template's JSON; a hand-made bad template shows
that each one can fail."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Template

from stepgraph import resources
from stepgraph.providers.table import DEFAULT_TABLE

# Actions that have no resource-level permissions, so AWS only accepts Resource "*" for them.
STAR_RESOURCE_ACTIONS = {
    **dict.fromkeys(
        (
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
        ),
        "X-Ray tracing of the functions and the state machine; X-Ray actions take no resource",
    ),
    **dict.fromkeys(
        (
            "logs:CreateLogDelivery",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
        ),
        "Step Functions execution logging: CloudWatch Logs vended-log delivery requires Resource '*'",
    ),
}
# Whole-service or "*" actions in an Allow. None is needed: every grant names its actions.
SERVICE_WILDCARD_ACTIONS: dict[str, str] = {}
# Action groups with a trailing wildcard, as CDK's bucket grants write them; only on the data bucket.
PREFIX_WILDCARD_ACTIONS = dict.fromkeys(
    ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*"),
    "CDK bucket grants, limited to the data bucket and its object-key prefixes",
)
# AWS managed policies a role may carry.
MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole": "the functions' own CloudWatch log streams",
}
SECRET_ENV_NAME = re.compile(r"API_?KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)
PROVIDER_KEY_ENVS = {p["keys_env"] for p in DEFAULT_TABLE["providers"].values()}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(tpl: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(resource id, statement) of every policy document: identity and resource policies."""
    out = []
    for rid, res in tpl["Resources"].items():
        props = res.get("Properties", {})
        docs = [props["PolicyDocument"]] if "PolicyDocument" in props else []
        docs += [p["PolicyDocument"] for p in props.get("Policies", [])]
        out += [(rid, st) for doc in docs for st in as_list(doc["Statement"])]
    return out


def allows(tpl: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(rid, st) for rid, st in statements(tpl) if st["Effect"] == "Allow"]


def wildcard_action_problems(tpl: dict[str, Any]) -> list[str]:
    problems = []
    for rid, st in allows(tpl):
        if "NotAction" in st:
            problems.append(f"{rid}: Allow with NotAction grants everything else")
        for action in as_list(st.get("Action", [])):
            service_wide = action == "*" or action.endswith(":*")
            if service_wide and action not in SERVICE_WILDCARD_ACTIONS:
                problems.append(f"{rid}: Allow {action}")
            elif "*" in action and not service_wide:
                if action not in PREFIX_WILDCARD_ACTIONS:
                    problems.append(f"{rid}: Allow {action} (not in the allow-list)")
                elif not all("DataBucket" in json.dumps(r) for r in as_list(st["Resource"])):
                    problems.append(f"{rid}: {action} on something other than the data bucket")
    return problems


def star_resource_problems(tpl: dict[str, Any]) -> list[str]:
    return [
        f"{rid}: {action} on Resource '*'"
        for rid, st in allows(tpl)
        if "*" in as_list(st.get("Resource", []))
        for action in as_list(st.get("Action", []))
        if action not in STAR_RESOURCE_ACTIONS
    ]


def public_principal_problems(tpl: dict[str, Any]) -> list[str]:
    return [
        f"{rid}: Allow to everyone"
        for rid, st in allows(tpl)
        if st.get("Principal") in ("*", {"AWS": "*"}) and "Condition" not in st
    ]


def managed_policy_problems(tpl: dict[str, Any]) -> list[str]:
    problems = []
    for rid, res in tpl["Resources"].items():
        for arn in res.get("Properties", {}).get("ManagedPolicyArns", []):
            text = json.dumps(arn)
            if not any(text.endswith(f':iam::aws:policy/{name}"]]}}') for name in MANAGED_POLICIES):
                problems.append(f"{rid}: managed policy {text}")
    return problems


def _denies_plain_http(policy: dict[str, Any], bucket_id: str) -> bool:
    for st in as_list(policy["PolicyDocument"]["Statement"]):
        covered = json.dumps(st.get("Resource"))
        if (
            st["Effect"] == "Deny"
            and st.get("Principal") in ("*", {"AWS": "*"})
            and "s3:*" in as_list(st["Action"])
            and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            and bucket_id in covered
            and "/*" in covered
        ):
            return True
    return False


def bucket_problems(tpl: dict[str, Any]) -> list[str]:
    res = tpl["Resources"]
    policies = {
        r["Properties"]["Bucket"].get("Ref"): r["Properties"]
        for r in res.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    }
    problems = []
    for bid, bucket in res.items():
        if bucket["Type"] != "AWS::S3::Bucket":
            continue
        block = bucket["Properties"].get("PublicAccessBlockConfiguration", {})
        flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        if not all(block.get(f) is True for f in flags):
            problems.append(f"{bid}: public access not fully blocked")
        if bucket["Properties"].get("AccessControl") in (
            "PublicRead",
            "PublicReadWrite",
            "AuthenticatedRead",
        ):
            problems.append(f"{bid}: a public ACL")
        if bid not in policies or not _denies_plain_http(policies[bid], bid):
            problems.append(f"{bid}: no policy denying requests without TLS")
    return problems


def environment_problems(tpl: dict[str, Any]) -> list[str]:
    problems = []
    for fid, fn in tpl["Resources"].items():
        if fn["Type"] != "AWS::Lambda::Function":
            continue
        variables = fn["Properties"].get("Environment", {}).get("Variables", {})
        for name, value in variables.items():
            if name in PROVIDER_KEY_ENVS or SECRET_ENV_NAME.search(name):
                problems.append(f"{fid}: env {name} looks like a credential")
            if "sk-" in json.dumps(value):
                problems.append(f"{fid}: env {name} holds an API key")
    return problems


@pytest.fixture(scope="module")
def tpl(template: Template) -> dict[str, Any]:
    return template.to_json()


@pytest.mark.parametrize(
    "check",
    [
        wildcard_action_problems,
        star_resource_problems,
        public_principal_problems,
        managed_policy_problems,
        bucket_problems,
        environment_problems,
    ],
)
def test_the_template_passes(tpl: dict[str, Any], check: Any) -> None:
    assert check(tpl) == []


def test_every_allow_list_entry_is_used(tpl: dict[str, Any]) -> None:
    granted = [(a, st) for _, st in allows(tpl) for a in as_list(st.get("Action", []))]
    star = {a for a, st in granted if "*" in as_list(st.get("Resource", []))}
    assert set(STAR_RESOURCE_ACTIONS) == star  # a stale entry would widen what the checks accept
    assert set(PREFIX_WILDCARD_ACTIONS) <= {a for a, _ in granted}
    roles = json.dumps([r for r in tpl["Resources"].values() if r["Type"] == "AWS::IAM::Role"])
    assert all(name in roles for name in MANAGED_POLICIES)
    assert len([r for r in tpl["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]) == 2


def test_keys_reach_the_functions_only_through_the_provider_secrets(tpl: dict[str, Any]) -> None:
    res = tpl["Resources"]
    secrets = {rid: r["Properties"] for rid, r in res.items() if r["Type"] == "AWS::SecretsManager::Secret"}
    # The secrets are the ones the runtime reads, and the template itself holds no key.
    names = {p["Name"] for p in secrets.values()}
    providers = DEFAULT_TABLE["providers"].values()
    key_names = {spec["secret_id"] for spec in providers}
    management = {spec["management_secret_id"] for spec in providers if spec.get("management_secret_id")}
    assert names == key_names | management and management
    assert all(n.startswith(resources.SECRET_PREFIX) for n in names)
    by_name = {p["Name"]: (rid, json.loads(p["SecretString"])) for rid, p in secrets.items()}
    assert all(by_name[n][1] == {"keys": []} for n in key_names)
    assert all(by_name[n][1] == {"key": ""} for n in management)  # created empty: no key in the template
    assert "sk-" not in json.dumps(tpl)
    readers = {
        rid
        for rid, st in allows(tpl)
        if "secretsmanager:GetSecretValue" in as_list(st["Action"])
        and all(r.get("Ref") in secrets for r in as_list(st["Resource"]))
    }
    fns = [f for f in res.values() if f["Type"] == "AWS::Lambda::Function"]
    step_and_poller = [
        f
        for f in fns
        if "graph-step" in f["Properties"]["Description"] or "poller" in f["Properties"]["Description"]
    ]
    assert len(step_and_poller) == 2
    for fn in step_and_poller:
        role = fn["Properties"]["Role"]["Fn::GetAtt"][0]
        assert any(res[p]["Properties"]["Roles"] == [{"Ref": role}] for p in readers), (
            f"{fn['Properties']['Description']} cannot read the provider secrets"
        )
    # The management key (it can manage keys) is read by the credits poller alone.
    management_ids = {by_name[n][0] for n in management}
    management_readers = {
        rid
        for rid, st in allows(tpl)
        if any(isinstance(r, dict) and r.get("Ref") in management_ids for r in as_list(st["Resource"]))
    }
    poller_role = next(
        f["Properties"]["Role"]["Fn::GetAtt"][0] for f in fns if "poller" in f["Properties"]["Description"]
    )
    assert management_readers and all(
        res[p]["Properties"]["Roles"] == [{"Ref": poller_role}] for p in management_readers
    )
    # Any other grant on a secret would be a way around the scoped reads above.
    assert not [
        (rid, st)
        for rid, st in allows(tpl)
        if any(a.startswith("secretsmanager:") for a in as_list(st["Action"])) and rid not in readers
    ]


BAD = {
    "Resources": {
        "Open": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyDocument": {
                    "Statement": [
                        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                        {"Effect": "Allow", "Action": ["*"], "Resource": {"Ref": "Table"}},
                        {"Effect": "Allow", "Action": "dynamodb:Get*", "Resource": {"Ref": "Table"}},
                        {"Effect": "Allow", "Action": "s3:List*", "Resource": {"Ref": "Other"}},
                        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
                    ]
                }
            },
        },
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "ManagedPolicyArns": [{"Fn::Join": ["", ["arn:", ":iam::aws:policy/AdministratorAccess"]]}]
            },
        },
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"AccessControl": "PublicRead"}},
        "Logs": {"Type": "AWS::S3::Bucket", "Properties": {}},
        "LogsPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": {"Ref": "Logs"},
                "PolicyDocument": {
                    "Statement": [
                        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "x"}
                    ]
                },
            },
        },
        "Fn": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Environment": {"Variables": {"OPENROUTER_API_KEY": "x", "MODEL": "sk-or-v1-abc"}}
            },
        },
    }
}


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            wildcard_action_problems,
            ["Allow s3:*", "Allow *", "dynamodb:Get* (not in", "s3:List* on something", "NotAction"],
        ),
        (star_resource_problems, ["s3:* on Resource '*'"]),
        (public_principal_problems, ["LogsPolicy: Allow to everyone"]),
        (managed_policy_problems, ["AdministratorAccess"]),
        (
            bucket_problems,
            ["Bucket: public access", "Bucket: a public ACL", "Bucket: no policy", "Logs: no policy"],
        ),
        (environment_problems, ["OPENROUTER_API_KEY looks like", "MODEL holds an API key"]),
    ],
)
def test_each_check_catches_what_it_is_for(check: Any, expected: list[str]) -> None:
    problems = "\n".join(check(BAD))
    assert all(e in problems for e in expected), problems
