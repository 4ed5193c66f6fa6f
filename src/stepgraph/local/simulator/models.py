"""The simulator's model table: context windows and prices (USD per token)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_tokens: int
    prompt_usd_per_token: float = 0.0
    completion_usd_per_token: float = 0.0

    @property
    def is_free(self) -> bool:
        return self.name.endswith(":free") or (
            self.prompt_usd_per_token == 0 and self.completion_usd_per_token == 0
        )

    def pricing(self) -> dict[str, str]:
        """`/api/v1/models` pricing: USD per token as decimal strings, "0" for free."""

        def usd(v: float) -> str:
            return "0" if v == 0 else format(v, ".10f").rstrip("0")

        return {
            "prompt": usd(self.prompt_usd_per_token),
            "completion": usd(self.completion_usd_per_token),
            "request": "0",
            "image": "0",
            "web_search": "0",
            "internal_reasoning": "0",
        }

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return round(
            prompt_tokens * self.prompt_usd_per_token + completion_tokens * self.completion_usd_per_token, 10
        )


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        ModelInfo("openai/gpt-oss-120b:free", 131_072),
        # Paid variant priced like OpenRouter's list price order of magnitude ($0.10 / $0.50 per M tokens).
        ModelInfo("openai/gpt-oss-120b", 131_072, 0.10e-6, 0.50e-6),
        ModelInfo("gpt-oss:120b", 131_072),  # Ollama Cloud's name: billed by plan, not per token.
        ModelInfo("openai/gpt-oss-20b:free", 131_072),
        ModelInfo("sim/small-4k", 4_096, 0.05e-6, 0.10e-6),
    )
}


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters a token."""
    return max(1, math.ceil(len(text) / 4))
