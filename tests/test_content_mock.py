"""mock-llm's answer controls (``X-Mock-Answer``, ``X-Mock-Text``, ``X-Mock-Tool-Call``): what
each route sends, read with the real clients, and a bad value refused with a 400 naming it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import openai
import pytest

from aivitals.mock_llm import MockConfig, MockServer
from aivitals.mock_llm.answers import ANSWERS


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(time_scale=0)) as server:
        yield server


@pytest.fixture
def gpt(upstream: MockServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


def test_text_is_percent_encoded_utf8(gpt: openai.OpenAI) -> None:
    reply = gpt.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"X-Mock-Text": "Je%20suis%20d%C3%A9sol%C3%A9%2C%20je%20ne%20peux%20pas."},
    )
    assert reply.choices[0].message.content == "Je suis désolé, je ne peux pas."


def test_streamed_answer_is_the_same_text(gpt: openai.OpenAI) -> None:
    stream = gpt.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        extra_headers={"X-Mock-Answer": "card"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == ANSWERS["card"]


def test_bad_answer_kind_is_refused(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        gpt.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Mock-Answer": "rude"},
        )
    assert "X-Mock-Answer must be one of refusal, polite" in str(caught.value)
    with pytest.raises(openai.BadRequestError, match="X-Mock-Text must be percent-encoded"):
        gpt.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"X-Mock-Text": "%ff"},
        )


def test_tool_call_on_each_route(gpt: openai.OpenAI, upstream: MockServer) -> None:
    headers = {"X-Mock-Tool-Call": "get_city", "X-Mock-Answer": "json"}
    chat = gpt.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], extra_headers=headers
    )
    call = chat.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert chat.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == ("get_city", ANSWERS["json"])  # type: ignore[union-attr]
    response = gpt.responses.create(model="m", input="x", extra_headers=headers)
    item = response.output[-1]
    assert item.type == "function_call" and item.arguments == ANSWERS["json"]
    claude = anthropic.Anthropic(base_url=upstream.url, api_key="k", max_retries=0)
    message = claude.messages.create(
        model="claude-haiku-4-5",
        max_tokens=1000,
        messages=[{"role": "user", "content": "x"}],
        extra_headers=headers,
    )
    claude.close()
    block = message.content[0]
    assert message.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.input == json.loads(ANSWERS["json"])


def test_empty_answer_on_anthropic_has_no_block(upstream: MockServer) -> None:
    claude = anthropic.Anthropic(base_url=upstream.url, api_key="k", max_retries=0)
    message = claude.messages.create(
        model="claude-haiku-4-5",
        max_tokens=1000,
        messages=[{"role": "user", "content": "x"}],
        extra_headers={"X-Mock-Answer": "empty"},
    )
    claude.close()
    assert message.content == [] and message.stop_reason == "end_turn"
