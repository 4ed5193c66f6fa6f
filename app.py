#!/usr/bin/env python3
"""The CDK app: one StepGraphStack, checked by cdk-nag."""

import os
import sys

# jsii's Node end-of-life banner is not for the user of this app: silence it before aws_cdk starts Node.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20,22,24")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import aws_cdk as cdk

from infra.context import ContextError, check_paths, load
from infra.nag import add_checks
from infra.stack import StepGraphStack

app = cdk.App()
try:
    settings = load(app.node.try_get_context, app.node.get_all_context())
    check_paths(settings)
except ContextError as exc:  # one line, no traceback: the message names the key and what it takes
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
StepGraphStack(app, "StepGraph", settings=settings)
add_checks(app)
app.synth()
