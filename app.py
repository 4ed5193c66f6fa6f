#!/usr/bin/env python3
"""The CDK app: one StepGraphStack, checked by cdk-nag."""

import aws_cdk as cdk

from infra.context import load
from infra.nag import add_checks
from infra.stack import StepGraphStack

app = cdk.App()
StepGraphStack(app, "StepGraph", settings=load(app.node.try_get_context))
add_checks(app)
app.synth()
