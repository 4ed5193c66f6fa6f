"""Keep the provider's `usage` (with `cost`) and the `gen-…` id on streamed calls, and type a 200 error.

langchain-openai keeps only token counts for streams and replaces the id with its own run id, so a
streamed call would lose its cost. This subclass copies the last chunk's `usage` and `id` into the
message's `response_metadata` (`provider_usage`, `generation_id`), where the usage callback reads them.

OpenRouter may answer HTTP 200 with a top-level `{"error": {...}}` body; langchain-openai raises a bare
`ValueError` for it, which no error matrix can read. This subclass raises `ProviderBodyError` instead,
carrying the error's own code.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI

from stepgraph.providers.matrix import ProviderBodyError

# event loop -> {id(model): that model's copy with an async HTTP client of this loop}
_LOOP_COPIES: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()


class UsageCapturingChatOpenAI(ChatOpenAI):
    def for_running_loop(self) -> UsageCapturingChatOpenAI:
        """This model with an async HTTP client of the running event loop. A client's connections belong
        to the loop that opened them; a warm container that runs each step in a new loop (`asyncio.run`)
        would otherwise reuse connections of a closed one."""
        import openai

        copies = _LOOP_COPIES.setdefault(asyncio.get_running_loop(), {})
        if id(self) not in copies:
            fresh = openai.DefaultAsyncHttpxClient(timeout=self.request_timeout)  # type: ignore[arg-type]
            copy = self.model_copy(
                update={"async_client": None, "root_async_client": None, "http_async_client": fresh}
            )
            copies[id(self)] = copy.validate_environment()  # type: ignore[operator]
        model: UsageCapturingChatOpenAI = copies[id(self)]
        return model

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
