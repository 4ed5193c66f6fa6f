"""Alarms (to an SNS topic, optional email), and a dashboard of spend, tokens, limits and progress.

"Today" is the UTC day, as for the budget guard's daily cap: the spend alarms sum over a UTC wall-clock
day (CloudWatch's default would be the last 24 hours) and the dashboard shows spend per UTC day.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stepgraph import metrics as names
from stepgraph.resources import METRIC_NAMESPACE, SERVICE_NAME

UTC = "UTC"  # the budget guard's day


def metric(name: str, stat: str = "Sum", period: Duration = Duration.minutes(5)) -> cw.Metric:
    # The service-only dimension set: one series for the whole stack.
    return cw.Metric(
        namespace=METRIC_NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE_NAME},
        statistic=stat,
        period=period,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        daily_budget_usd: float,
        min_credits_usd: float,
        free_requests_alarm: int,
        alarm_email: str | None,
        graph_step: lambda_.IFunction,
        state_machine: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, cid)
        self.topic = sns.Topic(self, "Alarms", display_name="stepgraph alarms", enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(alarm_email))
        notify = actions.SnsAction(self.topic)
        daily_spend = cw.MathExpression(
            expression="FILL(spend, 0)",
            using_metrics={"spend": metric(names.CREDITS_SPENT_USD, period=Duration.days(1))},
            period=Duration.days(1),
            label="spend per UTC day (USD)",
        )
        self.alarms: list[cw.Alarm] = []

        def alarm(
            name: str,
            m: cw.IMetric,
            threshold: float,
            op: cw.ComparisonOperator,
            desc: str,
            *,
            missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
            utc_day: bool = False,
        ) -> None:
            a = cw.Alarm(
                self,
                name,
                metric=m,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=op,
                treat_missing_data=missing,
                alarm_description=desc,
            )
            if utc_day:
                # The L2 Alarm has no evaluation window (aws-cdk-lib 2.275): set it on the L1 resource.
                cfn = cast(cw.CfnAlarm, a.node.default_child)
                cfn.evaluation_window = cw.CfnAlarm.EvaluationWindowProperty(
                    wall_clock_window=cw.CfnAlarm.WallClockWindowProperty(timezone=UTC)
                )
            a.add_alarm_action(notify)
            self.alarms.append(a)

        gte, lt, gt = (
            cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        for pct in (80, 95):
            alarm(
                f"Spend{pct}",
                daily_spend,
                daily_budget_usd * pct / 100,
                gte,
                f"stepgraph: {pct}% of the daily budget spent in a UTC day",
                utc_day=True,
            )
        alarm(
            "CreditsLow",
            metric(names.CREDITS_REMAINING_USD, "Minimum", Duration.minutes(15)),
            min_credits_usd,
            lt,
            "stepgraph: provider credits below the minimum",
        )
        alarm(
            "FreeRequestsLow",
            metric(names.FREE_REQUESTS_REMAINING, "Minimum", Duration.minutes(15)),
            free_requests_alarm,
            lt,
            "stepgraph: few free-model requests left today",
        )
        # The poller publishes CreditsKnown for each account it could poll; none for an hour means it
        # fails or no longer runs, so here missing data breaches.
        alarm(
            "CreditsPollerDown",
            metric(names.CREDITS_KNOWN, "SampleCount", Duration.hours(1)),
            1,
            lt,
            "stepgraph: the credits poller has not polled any account for an hour",
            missing=cw.TreatMissingData.BREACHING,
        )
        alarm("RateLimited", metric(names.RATE_LIMITED), 50, gt, "stepgraph: many 429s or limiter refusals")
        alarm("ProviderErrors", metric(names.PROVIDER_ERRORS), 20, gt, "stepgraph: provider errors")
        alarm(
            "StepErrors",
            graph_step.metric_errors(period=Duration.minutes(5)),
            5,
            gt,
            "stepgraph: graph-step errors",
        )
        alarm(
            "StepThrottles",
            graph_step.metric_throttles(period=Duration.minutes(5)),
            5,
            gt,
            "stepgraph: Lambda throttles",
        )
        alarm(
            "ExecutionsFailed",
            state_machine.metric_failed(period=Duration.minutes(5)),
            0,
            gt,
            "stepgraph: a batch execution failed",
        )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name="stepgraph")
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Spend per 5 minutes (USD)", left=[metric(names.CREDITS_SPENT_USD)]),
            cw.GraphWidget(
                title="Spend per UTC day (USD), as the spend alarms and the daily cap count it",
                left=[
                    daily_spend,
                    cw.Metric(
                        namespace=METRIC_NAMESPACE,
                        metric_name=names.SPENT_TODAY_USD,
                        dimensions_map={"service": SERVICE_NAME},
                        statistic="Maximum",
                        period=Duration.days(1),
                        label="the budget guard's counter (reservations included)",
                    ),
                ],
                left_annotations=[
                    cw.HorizontalAnnotation(value=daily_budget_usd * pct / 100, label=f"{pct}% of the budget")
                    for pct in (80, 95)
                ],
                period=Duration.days(1),
                start="-P14D",
                view=cw.GraphWidgetView.BAR,
            ),
            cw.SingleValueWidget(
                title="Spent today, UTC day (the budget guard's counter)",
                metrics=[metric(names.SPENT_TODAY_USD, "Maximum", Duration.minutes(15))],
                width=6,
            ),
            cw.GraphWidget(
                title="Tokens", left=[metric(names.PROMPT_TOKENS), metric(names.COMPLETION_TOKENS)]
            ),
            cw.GraphWidget(
                title="Requests, 429s and errors",
                left=[
                    metric(names.REQUESTS),
                    metric(names.RATE_LIMITED),
                    metric(names.PROVIDER_ERRORS),
                    metric(names.FALLBACKS),
                ],
            ),
            cw.GraphWidget(
                title="Limiter wait (ms)",
                left=[
                    metric(names.LIMITER_WAIT_MS, "p50"),
                    metric(names.LIMITER_WAIT_MS, "p95"),
                    metric(names.LIMITER_WAIT_MS, "p99"),
                ],
            ),
            cw.GraphWidget(
                title="Credits and free requests left",
                left=[
                    metric(names.CREDITS_REMAINING_USD, "Minimum"),
                    metric(names.USAGE_DAILY_USD, "Maximum"),
                ],
                right=[
                    metric(names.FREE_REQUESTS_REMAINING, "Minimum"),
                    metric(names.CREDITS_KNOWN, "Minimum"),  # 0: the balance is unknown (no management key)
                ],
            ),
            cw.GraphWidget(
                title="graph-step",
                left=[
                    graph_step.metric_invocations(),
                    graph_step.metric_errors(),
                    graph_step.metric_throttles(),
                ],
                right=[
                    graph_step.metric_duration(statistic="p50"),
                    graph_step.metric_duration(statistic="p95"),
                    graph_step.metric_duration(statistic="p99"),
                ],
            ),
            cw.GraphWidget(
                title="Executions",
                left=[
                    state_machine.metric_started(),
                    state_machine.metric_succeeded(),
                    state_machine.metric_failed(),
                ],
            ),
        )
