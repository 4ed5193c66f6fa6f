"""`AttemptContext`: who made one provider attempt, the contract between the runtime, the router and the
usage callback.

The runtime fills the run's part (execution, item, thread, graph), the router the attempt's part (attempt
number, provider, key label, model, limiter wait, fallback); both travel in the RunnableConfig `metadata`
under flat keys (DESIGN §5, so a user's own Lambda can set them and tracers such as Langfuse see plain
values), and this class is the one place that knows those keys. Plain data: no LangChain import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

RUN_FIELDS = ("execution_id", "item_id", "thread_id", "graph")


@dataclass(frozen=True)
class AttemptContext:
    execution_id: str = ""
    item_id: str = ""
    thread_id: str = ""
    graph: str = ""
    node: str = ""
    attempt: int = 1
    provider: str = ""
    key_label: str = ""
    model_requested: str = ""
    limiter_wait_ms: int = 0
    fallback: bool = False
    account: str = ""  # the provider account of the deployment (provider + account + model)
    learned_limit: str = ""  # limits lowered from the provider's answers in force, e.g. "rpm=16"
    limit_rpm: int = 0  # the deployment's requests / tokens per minute in force (0: none)
    limit_tpm: int = 0
    role: str = ""  # the model role of the call ("default", or one of config.models' roles)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> AttemptContext:
        """Read the context back; LangGraph's own `langgraph_node` stands in for a missing `node`."""
        meta = metadata or {}

        def text(key: str) -> str:
            value = meta.get(key)
            return "" if value is None else str(value)

        return cls(
            execution_id=text("execution_id"),
            item_id=text("item_id"),
            thread_id=text("thread_id"),
            graph=text("graph"),
            node=text("node") or text("langgraph_node"),
            attempt=int(meta.get("attempt") or 1),
            provider=text("provider"),
            key_label=text("key_label"),
            model_requested=text("model_requested"),
            limiter_wait_ms=int(meta.get("limiter_wait_ms") or 0),
            fallback=bool(meta.get("fallback", False)),
            account=text("account"),
            learned_limit=text("learned_limit"),
            limit_rpm=int(meta.get("limit_rpm") or 0),
            limit_tpm=int(meta.get("limit_tpm") or 0),
            role=text("role"),
        )

    def for_attempt(
        self,
        *,
        attempt: int,
        provider: str,
        key_label: str,
        model_requested: str,
        limiter_wait_ms: int,
        fallback: bool,
        account: str = "",
        learned_limit: str = "",
        limit_rpm: int = 0,
        limit_tpm: int = 0,
        role: str = "",
    ) -> AttemptContext:
        return replace(
            self,
            attempt=attempt,
            provider=provider,
            key_label=key_label,
            model_requested=model_requested,
            limiter_wait_ms=limiter_wait_ms,
            fallback=fallback,
            account=account,
            learned_limit=learned_limit,
            limit_rpm=limit_rpm,
            limit_tpm=limit_tpm,
            role=role,
        )

    def run_metadata(self) -> dict[str, Any]:
        """The run's part only (what the runtime sets once per step)."""
        return {name: getattr(self, name) for name in RUN_FIELDS}

    def attempt_metadata(self) -> dict[str, Any]:
        """The attempt's part (what the router merges into each call's config); `node` is left to
        LangGraph's `langgraph_node` unless someone set it."""
        skip = {*RUN_FIELDS, *(() if self.node else ("node",))}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
