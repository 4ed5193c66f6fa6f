"""Deterministic tool calls and structured replies: what the simulator answers when a request carries
`tools` or `response_format`.

Tools: a request whose conversation has no tool result since the last user message calls tools (unless
`tool_choice` is `none`): the tools the last user message names (all of them, unless
`parallel_tool_calls` is false), else the first one; a forced `tool_choice` (`required` or a named
function) always calls. After tool results the model answers in text. Arguments are a valid instance of
the tool's JSON schema (numbers from the prompt, enum's first value, defaults); directives in the last user
message decide instead:

    sim-tool: lookup_order {"order_id": "A-17"}      (one line per call; several lines: parallel calls)
    sim-json: {"category": "refund"}                 (the reply of a response_format / json_schema call)
    sim-fault: malformed-tool-args                   (arguments that are not JSON)
    sim-fault: invalid-json                          (a response_format reply that is not JSON)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from stepgraph.local.simulator.completions import message_text

_TOOL = re.compile(r"^\s*sim-tool:\s*([A-Za-z0-9_\-]+)\s*(\{.*\})?\s*$", re.MULTILINE | re.IGNORECASE)
_JSON = re.compile(r"^\s*sim-json:\s*(.*)$", re.MULTILINE | re.IGNORECASE)
_FAULT = re.compile(r"^\s*sim-fault:\s*([a-z\-]+)\s*$", re.MULTILINE | re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_QUOTED = re.compile(r"'([^'\n]{1,200})'|\"([^\"\n]{1,200})\"")
MALFORMED_ARGS = '{"unterminated": '


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as providers send it


@dataclass
class Structured:
    """What the reply carries beyond plain text: tool calls, or a JSON body for `response_format`."""

    tool_calls: list[ToolCall] = field(default_factory=list)
    json_text: str | None = None


def _last_user(messages: list[dict[str, Any]]) -> tuple[int, str]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i, message_text(messages[i])
    return -1, ""


class Hints:
    """What the prompt offers for arguments: its numbers and its quoted strings, each used once, in order."""

    def __init__(self, text: str) -> None:
        self.numbers = _NUMBER.findall(text)
        self.strings = [a or b for a, b in _QUOTED.findall(text)]


def instance_of(schema: dict[str, Any], hints: Hints | list[str], defs: dict[str, Any] | None = None) -> Any:
    """A value that validates against `schema` (the subset tools use: objects, arrays, scalars, enums,
    anyOf, $ref), preferring the prompt's numbers for numeric fields and its quoted text for strings."""
    if isinstance(hints, list):
        hints = Hints(" ".join(hints))
    numbers = hints.numbers
    defs = defs if defs is not None else schema.get("$defs", schema.get("definitions", {}))
    if "$ref" in schema:
        return instance_of(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), hints, defs)
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for branch in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(branch, []) if s.get("type") != "null"]
        if options:
            return instance_of(options[0], hints, defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: instance_of(sub, hints, defs) for name, sub in props.items()}
    if kind == "array":
        return [instance_of(schema.get("items", {"type": "string"}), hints, defs)]
    if kind == "integer":
        ints = [n for n in numbers if "." not in n]
        return int(ints.pop(0)) if ints else 1
    if kind == "number":
        return float(numbers.pop(0)) if numbers else 1.0
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return hints.strings.pop(0) if hints.strings else "sim"


def _functions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for tool in body.get("tools") or []:
        fn = tool.get("function", {}) if isinstance(tool, dict) else {}
        if fn.get("name"):
            out[fn["name"]] = fn.get("parameters") or {"type": "object", "properties": {}}
    return out


def _call_id(name: str, i: int, seed: str) -> str:
    return "call_" + hashlib.sha256(f"{seed}/{name}/{i}".encode()).hexdigest()[:16]


def tool_calls(body: dict[str, Any], messages: list[dict[str, Any]]) -> list[ToolCall]:
    functions = _functions(body)
    if not functions:
        return []
    at, text = _last_user(messages)
    choice = body.get("tool_choice", "auto")
    forced = choice == "required" or isinstance(choice, dict)
    answered = any(m.get("role") == "tool" for m in messages[at + 1 :])
    if choice == "none" or (answered and not forced):
        return []
    faulty = "malformed-tool-args" in [f.lower() for f in _FAULT.findall(text)]
    seed = text + json.dumps(sorted(functions))
    wanted = [(name, args) for name, args in _TOOL.findall(text) if name in functions]
    if isinstance(choice, dict):
        named = choice.get("function", {}).get("name")
        wanted = [w for w in wanted if w[0] == named] or [(named, "")]
    elif not wanted:
        mentioned = [n for n in functions if re.search(rf"\b{re.escape(n)}\b", text)]
        wanted = [(n, "") for n in (mentioned or list(functions)[:1])]
    if body.get("parallel_tool_calls") is False:
        wanted = wanted[:1]
    calls = []
    for i, (name, given) in enumerate(wanted):
        args = given or json.dumps(instance_of(functions.get(name, {}), Hints(text)), ensure_ascii=False)
        calls.append(ToolCall(_call_id(name, i, seed), name, MALFORMED_ARGS if faulty else args))
    return calls


def json_reply(body: dict[str, Any], messages: list[dict[str, Any]]) -> str | None:
    """The JSON text of a `response_format` reply, or None when the request asks for none."""
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return None
    _, text = _last_user(messages)
    if "invalid-json" in [f.lower() for f in _FAULT.findall(text)]:
        return MALFORMED_ARGS
    given = _JSON.findall(text)
    if given:
        return given[-1].strip()
    if fmt["type"] == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        return json.dumps(instance_of(schema, Hints(text)), ensure_ascii=False)
    # JSON mode has no schema: the keys the prompt quotes (e.g. "a JSON with 'setup' and 'punchline'").
    keys = Hints(text).strings
    return json.dumps({k: f"{k} of the reply" for k in keys} if keys else {"reply": text.strip()[:200]})


def structured(body: dict[str, Any], messages: list[dict[str, Any]]) -> Structured:
    calls = tool_calls(body, messages)
    return Structured(tool_calls=calls, json_text=None if calls else json_reply(body, messages))
