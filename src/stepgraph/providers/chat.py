"""Keep the provider's `usage` (with `cost`) and the `gen-…` id on streamed calls, and type a 200 error.

langchain-openai keeps only token counts for streams and replaces the id with its own run id, so a
streamed call would lose its cost. This subclass copies the last chunk's `usage` and `id` into the
message's `response_metadata` (`provider_usage`, `generation_id`), where the usage callback reads them.

OpenRouter may answer HTTP 200 with a top-level `{"error": {...}}` body; langchain-openai raises a bare
`ValueError` for it, which no error matrix can read. This subclass raises `ProviderBodyError` instead,
carrying the error's own code.
"""

from __future__ import annotations

from typing import Any

from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI

from stepgraph.providers.matrix import ProviderBodyError


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

    def _create_chat_result(self, response: Any, generation_info: dict | None = None) -> Any:
        error = response.get("error") if isinstance(response, dict) else getattr(response, "error", None)
        if error:
            body = response if isinstance(response, dict) else response.model_dump(warnings=False)
            raise ProviderBodyError(body)
        return super()._create_chat_result(response, generation_info)
