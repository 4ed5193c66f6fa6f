"""Typed errors.

Step Functions matches a Lambda error by its `errorType`, which is the exception's class name (the
ASL's Catch/Retry rules name `CheckpointConflict`, `LimiterUnavailable`, ...); `code` is that name
under the `StepGraph.` prefix, for logs and people.
"""

from __future__ import annotations


class StepGraphError(Exception):
    """Base class: what failed, where, and what to do."""

    @property
    def code(self) -> str:
        return f"StepGraph.{type(self).__name__}"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class InvalidInput(StepGraphError):
    """The execution input or a step event is malformed."""


class ConfigError(StepGraphError):
    """A setting (env var, CLI flag, CDK context, graph config) has a bad value."""


class UnknownGraph(InvalidInput):
    """The graph name is not registered."""
