"""Typed errors. Each carries a stable `code` the state machine can match on.

Step Functions matches a Lambda error by its `errorType`, which is the exception's
class name; `code` mirrors the `StepGraph.*` names used in the ASL Catch/Retry rules.
"""

from __future__ import annotations


class StepGraphError(Exception):
    """Base class: what failed, where, and what to do."""

    code = "StepGraph.Error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class InvalidInput(StepGraphError):
    """The execution input or a step event is malformed."""

    code = "StepGraph.InvalidInput"


class ConfigError(StepGraphError):
    """A setting (env var, CLI flag, CDK context, graph config) has a bad value."""

    code = "StepGraph.ConfigError"


class UnknownGraph(InvalidInput):
    code = "StepGraph.UnknownGraph"
