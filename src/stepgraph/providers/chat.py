"""Keep the provider's `usage` (with `cost`) and the `gen-…` id on streamed calls.

langchain-openai keeps only token counts for streams and replaces the id with its own run id, so a
streamed call would lose its cost. This subclass copies the last chunk's `usage` and `id` into the
message's `response_metadata` (`provider_usage`, `generation_id`), where the usage callback reads them.
"""

from __future__ import annotations

from typing import Any

from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI


class UsageCapturingChatOpenAI(ChatOpenAI):
    def _convert_chunk_to_generation_chunk(
        self, chunk: dict, default_chunk_class: type, base_generation_info: dict | None
    ) -> ChatGenerationChunk | None:
        result = super()._convert_chunk_to_generation_chunk(chunk, default_chunk_class, base_generation_info)
        usage: Any = chunk.get("usage")
        if result is not None and usage:
            # Only the usage chunk carries these, so merging the chunks never concatenates them.
            result.message.response_metadata["provider_usage"] = dict(usage)
            if str(chunk.get("id", "")).startswith("gen-"):
                result.message.response_metadata["generation_id"] = chunk["id"]
        return result
