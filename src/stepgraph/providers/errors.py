"""What the router raises. Class names are the error types the state machine sees."""

from __future__ import annotations

import time

from stepgraph.errors import StepGraphError


class Throttled(StepGraphError):
    """The next attempt must wait longer than this step may: end the step, let the state machine wait."""

    def __init__(self, retry_after_s: float, reason: str) -> None:
        self.retry_after_s = max(0.0, retry_after_s)
        # The wait runs from now: the step may end later (its sibling branches run on first).
        self.until = time.monotonic() + self.retry_after_s
        super().__init__(f"throttled for {self.retry_after_s:.2f} s: {reason}")


class ProviderFatal(StepGraphError):
    """400/401/403 and the like: retrying or falling back cannot help."""

    def __init__(
        self, provider: str, model: str, status: int | None, detail: str, hint: str | None = None
    ) -> None:
        self.provider, self.model, self.status = provider, model, status
        super().__init__(f"{provider} rejected {model} (HTTP {status}): {detail}", hint=hint)


class ModelUnavailable(ProviderFatal):
    """The provider does not know the model (retired or misspelt ID) and no later model served."""

    def __init__(self, provider: str, model: str, status: int | None, detail: str) -> None:
        super().__init__(
            provider,
            model,
            status,
            detail,
            hint="check the model ID against the provider's /models list, or add another model to the chain",
        )


class AllModelsFailed(StepGraphError):
    """Every model of the chain failed or was skipped."""


class NoCapableModel(StepGraphError):
    """The call needs what no model of the chain can serve (tool calling, JSON schema output)."""

    def __init__(self, needs: str, deployments: list[str]) -> None:
        self.needs, self.deployments = needs, deployments
        super().__init__(
            f"no model of the chain supports {needs} (chain: {', '.join(deployments) or 'empty'})",
            hint="add a model whose provider-table entry lists that capability, or drop it from the call",
        )


class StreamInterrupted(StepGraphError):
    """A streamed reply failed after part of it reached the caller: retrying would repeat that part."""

    def __init__(self, provider: str, model: str, cause: BaseException) -> None:
        self.provider, self.model = provider, model
        super().__init__(
            f"the stream from {provider} {model} broke after its first chunks ({type(cause).__name__}: {cause})",
            hint="call again (the step resumes at this node), or use invoke() to let the router retry",
        )
