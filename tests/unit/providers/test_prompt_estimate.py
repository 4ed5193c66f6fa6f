"""The router's token estimate never reads below what a chat-templated provider counts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from stepgraph.local.simulator.completions import prompt_text
from stepgraph.local.simulator.models import count_tokens
from stepgraph.providers.admission import prompt_tokens

ROLES = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}


@given(st.lists(st.tuples(st.sampled_from(list(ROLES)), st.text(max_size=400)), min_size=1, max_size=8))
def test_the_estimate_covers_the_roles_and_separators_a_provider_counts(messages: list) -> None:
    # Estimating content alone read a few tokens low and drew 429s at a token limit's edge.
    ours = [kind(content=text) for kind, text in messages]
    wire = [{"role": ROLES[kind], "content": text} for kind, text in messages]
    assert prompt_tokens(ours) >= count_tokens(prompt_text(wire))
