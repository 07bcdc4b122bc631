"""The mapping hands the quality stage a content thunk only for a span that may carry messages.

A span none of whose attribute names begins like one `content_of_span` reads
(`aivitals.otlp.content.CONTENT_PREFIXES`) has no content: no thunk is kept for it, so the
quality worker is not given a call it could only find empty. A span with any such name keeps
its thunk, and it reads what it read before.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aivitals.otlp.content import CONTENT_PREFIXES, content_of_span
from aivitals.otlp.mapping import calls_from_traces

from .support.otlp_spans import CHAT, export, span


def test_a_span_without_messages_gets_no_content_thunk() -> None:
    plain = {**CHAT, "gen_ai.response.id": "chatcmpl-1", "server.address": "api.openai.com"}
    batch = calls_from_traces(export(span(plain)), content=True)
    assert len(batch.calls) == 1
    assert batch.contents == {}


def test_a_span_with_messages_keeps_its_thunk_and_it_reads_them() -> None:
    talk = {**CHAT, "gen_ai.prompt.0.content": "Capital?", "gen_ai.completion.0.content": "Paris."}
    batch = calls_from_traces(export(span(talk)), content=True)
    (call,) = batch.calls
    content = batch.contents[call.id]()
    assert content is not None
    assert (content.messages[0].text, content.output_text) == ("Capital?", "Paris.")


def test_a_finish_reason_under_an_indexed_name_still_counts_as_content() -> None:
    # gen_ai.completion.0.finish_reason is a fact the mapping reads, and a name content_of_span
    # reads too (an answer with no text): the thunk stays, as it always was.
    attrs = {**CHAT, "gen_ai.completion.0.finish_reason": "length"}
    batch = calls_from_traces(export(span(attrs)), content=True)
    (call,) = batch.calls
    assert call.finish_reason == "length"
    content = batch.contents[call.id]()
    assert content is not None
    assert (content.messages, content.output_text) == ((), None)


def test_no_thunk_is_kept_when_the_stage_wants_no_content() -> None:
    talk = {**CHAT, "gen_ai.prompt.0.content": "Capital?"}
    assert calls_from_traces(export(span(talk)), content=False).contents == {}


_HEADS = st.sampled_from(
    [
        "gen_ai.prompt.",
        "gen_ai.completion.",
        "llm.input_messages.",
        "llm.output_messages.",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.",
        "llm.",
        "",
    ]
)
_TAILS = st.sampled_from(
    [
        "",
        "0.content",
        "1.role",
        "0.message.content",
        "0.message.role",
        "0.message.contents.0.message_content.text",
        "0.tool_calls.0.name",
        "0.tool_calls.0.tool_call.function.arguments",
        "0.finish_reason",
        "x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(_HEADS, _TAILS, st.text(max_size=8))
def test_every_attribute_content_of_span_reads_begins_with_a_content_prefix(
    head: str, tail: str, noise: str
) -> None:
    for key in (head + tail, head + noise + tail, noise + head + tail):
        value = '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]'
        found = content_of_span(span({key: value}), None)
        if found is not None:
            assert key.startswith(CONTENT_PREFIXES), key
