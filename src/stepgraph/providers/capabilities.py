"""What a call needs from a model (read from its keywords) and whether a model's table entry serves it.

`tools`: function calling (`tools=`, `tool_choice=`); `structured_output`: JSON mode (`response_format`
`{"type": "json_object"}`); `json_schema`: schema-constrained output (`response_format` `json_schema`, or
a pydantic class). The router passes over deployments that lack a needed capability.
"""

from __future__ import annotations

from typing import Any, Literal

Capability = Literal["tools", "structured_output", "json_schema"]
ALL: tuple[Capability, ...] = ("tools", "structured_output", "json_schema")


def needed(kwargs: dict[str, Any]) -> frozenset[str]:
    """The capabilities a call with these keywords needs."""
    out: set[str] = set()
    if kwargs.get("tools") or kwargs.get("functions"):
        out.add("tools")
    fmt = kwargs.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else "json_schema"  # a pydantic class or TypedDict
        out.add("json_schema" if kind == "json_schema" else "structured_output")
    return frozenset(out)


def capable(spec: Any, needs: frozenset[str]) -> bool:
    return needs <= set(getattr(spec, "capabilities", ALL))


def describe(needs: frozenset[str]) -> str:
    return " and ".join(sorted(needs))
