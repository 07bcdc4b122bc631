"""The SDK's sources of `CallContent`: the real `openai` and `anthropic` clients, instrumented,
against `aivitals mock-llm` told what to answer (``X-Mock-Answer``, ``X-Mock-Tool-Call``,
``X-Mock-Finish-Reason``), whole and streamed. A consumer registered on the quality stage sees
what the evaluators see: the prompt, the assembled answer, its refusal, tool calls and finish
reason, and whether the request asked for JSON (and in which schema).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import aivitals
from aivitals.content import CallContent
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.mock_llm.answers import ANSWERS, REFUSAL_SENTENCE
from aivitals.model import Call

from .conftest import Recorded

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
}
TOOLS = [{"type": "function", "function": {"name": "get_city", "parameters": SCHEMA}}]


class Seen:
    """A content consumer that keeps what it is given, by call id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.contents: dict[str, tuple[Call, CallContent]] = {}

    def on_content(self, call: Call, content: CallContent) -> None:
        with self.lock:
            self.contents[call.id] = (call, content)


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=5, time_scale=0)) as server:
        yield server


@pytest.fixture
def seen(recorded: Recorded) -> Seen:
    consumer = Seen()
    recorded.runtime.recorder.quality.register(consumer, name="seen")
    return consumer


def content_of_last(recorded: Recorded, seen: Seen) -> CallContent:
    call = recorded.calls()[-1]
    return seen.contents[call.id][1]


@pytest.fixture
def gpt(upstream: MockServer, recorded: Recorded) -> Iterator[openai.OpenAI]:
    client = aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )
    yield client
    client.close()


@pytest.fixture
def claude(upstream: MockServer, recorded: Recorded) -> Iterator[anthropic.Anthropic]:
    client = aivitals.instrument(
        anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    )
    yield client
    client.close()


def chat(client: openai.OpenAI, stream: bool, headers: dict[str, str], **options: Any) -> None:
    messages: list[Any] = options.pop(
        "messages", [{"role": "user", "content": "What is the capital of France?"}]
    )
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=stream, extra_headers=headers, **options
    )
    if stream:
        for _ in reply:
            pass


@pytest.mark.parametrize("stream", [False, True])
def test_chat_answer_and_prompt(
    gpt: openai.OpenAI, recorded: Recorded, seen: Seen, stream: bool
) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Capital of France?"}]},
    ]
    chat(gpt, stream, {"X-Mock-Answer": "polite"}, messages=messages)
    # The caller's own list grows after the call (a chat loop): the content is the prompt sent.
    messages.append({"role": "assistant", "content": "later"})
    content = content_of_last(recorded, seen)
    assert content.output_text == ANSWERS["polite"]
    assert [(m.role, m.text) for m in content.messages] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
    ]
    assert content.finish_reason == "stop" and content.refusal is None
    assert not content.asked_for_json and content.has_answer


@pytest.mark.parametrize("stream", [False, True])
def test_chat_refusal_field(
    gpt: openai.OpenAI, recorded: Recorded, seen: Seen, stream: bool
) -> None:
    chat(gpt, stream, {"X-Mock-Finish-Reason": "refusal"})
    content = content_of_last(recorded, seen)
    assert content.refusal == REFUSAL_SENTENCE
    assert not content.output_text


@pytest.mark.parametrize("stream", [False, True])
def test_chat_empty_and_cut(
    gpt: openai.OpenAI, recorded: Recorded, seen: Seen, stream: bool
) -> None:
    chat(gpt, stream, {"X-Mock-Answer": "empty"})
    assert not content_of_last(recorded, seen).has_answer
    chat(gpt, stream, {}, max_tokens=3)
    cut = content_of_last(recorded, seen)
    assert cut.finish_reason == "length" and cut.output_text == "Lorem ipsum dolor"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_json_schema_asked(
    gpt: openai.OpenAI, recorded: Recorded, seen: Seen, stream: bool
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": SCHEMA, "strict": True},
    }
    chat(gpt, stream, {"X-Mock-Answer": "json_off_schema"}, response_format=response_format)
    content = content_of_last(recorded, seen)
    assert content.response_format == "json_schema" and content.json_schema == SCHEMA
    assert json.loads(content.output_text or "") == {"city": 75, "population": "many"}
    chat(gpt, stream, {"X-Mock-Answer": "invalid_json"}, response_format={"type": "json_object"})
    content = content_of_last(recorded, seen)
    assert content.response_format == "json_object" and content.json_schema is None
    assert content.output_text == ANSWERS["invalid_json"]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_call(gpt: openai.OpenAI, recorded: Recorded, seen: Seen, stream: bool) -> None:
    chat(gpt, stream, {"X-Mock-Tool-Call": "get_city", "X-Mock-Answer": "json"}, tools=TOOLS)
    content = content_of_last(recorded, seen)
    assert [(t.name, json.loads(t.arguments)) for t in content.tool_calls] == [
        ("get_city", {"city": "Paris", "population": 2102650})
    ]
    assert content.tools_schema == {"get_city": SCHEMA}
    assert content.finish_reason == "tool_calls" and content.has_answer


def test_legacy_completion_text(gpt: openai.OpenAI, recorded: Recorded, seen: Seen) -> None:
    gpt.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hi", extra_headers={"X-Mock-Answer": "email"}
    )
    content = content_of_last(recorded, seen)
    assert content.output_text == ANSWERS["email"]
    assert [(m.role, m.text) for m in content.messages] == [("user", "Say hi")]


def test_embeddings_have_no_content(gpt: openai.OpenAI, recorded: Recorded, seen: Seen) -> None:
    gpt.embeddings.create(model="text-embedding-3-small", input="hello")
    call = recorded.calls()[-1]
    assert call.id not in seen.contents


@pytest.mark.parametrize("stream", [False, True])
def test_responses_text_refusal_and_format(
    gpt: openai.OpenAI, recorded: Recorded, seen: Seen, stream: bool
) -> None:
    def respond(headers: dict[str, str], **options: Any) -> CallContent:
        reply = gpt.responses.create(
            model="gpt-4o-mini",
            input="Capital?",
            instructions="Be brief.",
            stream=stream,
            extra_headers=headers,
            **options,
        )
        if stream:
            for _ in reply:
                pass
        return content_of_last(recorded, seen)

    content = respond({"X-Mock-Answer": "card"})
    assert content.output_text == ANSWERS["card"]
    assert [(m.role, m.text) for m in content.messages] == [
        ("system", "Be brief."),
        ("user", "Capital?"),
    ]
    refused = respond({"X-Mock-Finish-Reason": "refusal"})
    assert refused.refusal == REFUSAL_SENTENCE and refused.finish_reason == "refusal"
    shaped = respond(
        {"X-Mock-Answer": "json"},
        text={"format": {"type": "json_schema", "name": "city", "schema": SCHEMA}},
    )
    assert shaped.response_format == "json_schema" and shaped.json_schema == SCHEMA
    tools = [{"type": "function", "name": "get_city", "parameters": SCHEMA}]
    called = respond({"X-Mock-Tool-Call": "get_city", "X-Mock-Answer": "invalid_json"}, tools=tools)
    assert [(t.name, t.arguments) for t in called.tool_calls] == [
        ("get_city", ANSWERS["invalid_json"])
    ]
    assert called.tools_schema == {"get_city": SCHEMA}


def ask_claude(
    client: anthropic.Anthropic, stream: bool, headers: dict[str, str], **options: Any
) -> None:
    options.setdefault("max_tokens", 500)
    reply = client.messages.create(
        model="claude-sonnet-4-6",
        system="Be brief.",
        messages=[{"role": "user", "content": "Capital of France?"}],
        stream=stream,
        extra_headers=headers,
        **options,
    )
    if stream:
        for _ in reply:
            pass


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_text_refusal_cut_and_tool(
    claude: anthropic.Anthropic, recorded: Recorded, seen: Seen, stream: bool
) -> None:
    ask_claude(claude, stream, {"X-Mock-Answer": "iban"})
    content = content_of_last(recorded, seen)
    assert content.output_text == ANSWERS["iban"]
    assert [(m.role, m.text) for m in content.messages] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
    ]
    ask_claude(claude, stream, {"X-Mock-Finish-Reason": "refusal"})
    refused = content_of_last(recorded, seen)
    assert refused.finish_reason == "refusal" and not refused.has_answer
    ask_claude(claude, stream, {}, max_tokens=2)
    assert content_of_last(recorded, seen).finish_reason == "length"
    tools = [{"name": "get_city", "description": "a city", "input_schema": SCHEMA}]
    ask_claude(
        claude,
        stream,
        {"X-Mock-Tool-Call": "get_city", "X-Mock-Answer": "json_off_schema"},
        tools=tools,
    )
    called = content_of_last(recorded, seen)
    assert [(t.name, json.loads(t.arguments)) for t in called.tool_calls] == [
        ("get_city", {"city": 75, "population": "many"})
    ]
    assert called.tools_schema == {"get_city": SCHEMA} and called.finish_reason == "tool_calls"


def test_anthropic_stream_helper(
    claude: anthropic.Anthropic, recorded: Recorded, seen: Seen
) -> None:
    with claude.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Mock-Answer": "api_key"},
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == ANSWERS["api_key"]
    assert content_of_last(recorded, seen).output_text == ANSWERS["api_key"]


def test_track_set_response(recorded: Recorded, seen: Seen, upstream: MockServer) -> None:
    raw = openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    response = raw.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Mock-Answer": "phone"},
    )
    raw.close()
    with aivitals.track(model="gpt-4o-mini", provider="openai") as call:
        call.set_response(response)
    assert recorded.calls()[-1].id == call.id
    content = seen.contents[call.id][1]
    assert content.output_text == ANSWERS["phone"] and content.finish_reason == "stop"


def test_no_consumer_no_content(gpt: openai.OpenAI, recorded: Recorded) -> None:
    """Nothing reads content: the stream keeps no events (only a consumer makes it keep them)."""
    stage = recorded.runtime.recorder.quality
    for name in list(stage.consumers):  # the evaluators, on by default
        stage.unregister(name)
    assert not recorded.runtime.recorder.wants_content
    from aivitals.sdk import streams

    kept: list[Any] = []
    original = streams.StreamWatch.end

    def end(self: streams.StreamWatch, error: BaseException | None = None) -> None:
        kept.append(self.kept)
        original(self, error)

    streams.StreamWatch.end = end  # type: ignore[method-assign]
    try:
        chat(gpt, True, {})
    finally:
        streams.StreamWatch.end = original  # type: ignore[method-assign]
    assert kept and kept[0] is None
