"""Monitoring in the synthesized template: the alarms, the dashboard, the email subscription and the outputs;
spend summed over the UTC wall-clock day, and an alarm when the credits poller goes quiet."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match, Template

from stepgraph import resources


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
    template.resource_count_is("AWS::SecretsManager::Secret", 6)  # 5 providers' keys, 1 management key


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
