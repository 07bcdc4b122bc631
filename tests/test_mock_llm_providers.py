"""`aivitals mock-llm` speaking Anthropic's Messages API and OpenAI's Responses API, checked with
the real `anthropic` and `openai` clients over real sockets (issue 16)."""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from aivitals.finish import finish_reason_from_anthropic
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.mock_llm.controls import ControlError, read_controls
from aivitals.mock_llm.shapes import filler_text

MODEL = "claude-sonnet-4-6"  # a name the anthropic client does not warn about (warnings fail tests)
MESSAGES: list[Any] = [{"role": "user", "content": "Say something."}]
CACHED = {
    "X-Mock-Prompt-Tokens": "3000",
    "X-Mock-Cached-Tokens": "1000",
    "X-Mock-Cache-Write-Tokens": "1500",
    "X-Mock-Cache-Write-1h-Tokens": "500",
    "X-Mock-Completion-Tokens": "30",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(MockConfig(time_scale=0)) as running:
        yield running


@pytest.fixture
def claude(server: MockServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0) as made:
        yield made


@pytest.fixture
def client(server: MockServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as made:
        yield made


def test_messages_report_reads_writes_by_lifetime_searches_and_tier(
    claude: anthropic.Anthropic,
) -> None:
    reply = claude.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=MESSAGES,
        extra_headers={
            **CACHED,
            "X-Mock-Web-Search-Requests": "2",
            "X-Mock-Service-Tier": "priority",
        },
    )
    assert reply.id.startswith("msg_") and reply.model == MODEL
    usage = reply.usage
    # Anthropic's input_tokens leaves out the cache reads and writes: 3000 - 1000 - 1500.
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (500, 1000)
    assert usage.cache_creation_input_tokens == 1500
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 1000
    assert usage.cache_creation.ephemeral_1h_input_tokens == 500
    assert usage.server_tool_use is not None and usage.server_tool_use.web_search_requests == 2
    assert usage.service_tier == "priority"
    assert usage.output_tokens == 30
    assert reply.stop_reason == "end_turn"
    assert reply.content[0].type == "text" and reply.content[0].text == filler_text(30)


def test_messages_stream_ends_with_the_whole_answers_usage(claude: anthropic.Anthropic) -> None:
    headers = {**CACHED, "X-Mock-Web-Search-Requests": "1"}
    whole = claude.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
    )
    kinds: list[str] = []
    with claude.messages.stream(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "message_start":
                started = event.message.usage
        final = stream.get_final_message()
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    # The start already counts the input and one output token; searches come with the delta.
    assert (started.input_tokens, started.output_tokens) == (500, 1)
    assert started.server_tool_use is not None and started.server_tool_use.web_search_requests == 0
    assert final.usage == whole.usage
    assert final.stop_reason == whole.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text == filler_text(30)


def test_messages_raw_stream_is_anthropics_event_sequence(server: MockServer) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": MESSAGES, "stream": True}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    reply = httpx.post(f"{server.url}/v1/messages", json=body, headers=headers)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    names = [
        line[len("event: ") :] for line in reply.text.splitlines() if line.startswith("event: ")
    ]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "ping" in names and "message_delta" in names
    assert reply.headers["request-id"].startswith("req_")


def test_max_tokens_cut_and_refusal_are_anthropic_stop_reasons(
    claude: anthropic.Anthropic,
) -> None:
    cut = claude.messages.create(model=MODEL, max_tokens=3, messages=MESSAGES)
    assert (cut.stop_reason, cut.usage.output_tokens) == ("max_tokens", 3)
    refused = claude.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=MESSAGES,
        extra_headers={"X-Mock-Finish-Reason": "refusal"},
    )
    assert refused.stop_reason == "refusal" and refused.content == []
    assert finish_reason_from_anthropic(refused.stop_reason) == "refusal"


@pytest.mark.parametrize(
    ("kind", "exception", "status"),
    [
        ("rate_limit", anthropic.RateLimitError, 429),
        ("context_length", anthropic.BadRequestError, 400),
        ("server_error", anthropic.InternalServerError, 500),
        ("unavailable", anthropic.OverloadedError, 529),
        ("auth", anthropic.AuthenticationError, 401),
    ],
)
def test_injected_errors_come_in_anthropics_shape(
    claude: anthropic.Anthropic, kind: str, exception: type[anthropic.APIStatusError], status: int
) -> None:
    with pytest.raises(exception) as raised:
        claude.messages.create(
            model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers={"X-Mock-Error": kind}
        )
    assert raised.value.status_code == status
    body = raised.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}


def test_messages_refuse_bad_requests_in_anthropics_words(server: MockServer) -> None:
    url, key = f"{server.url}/v1/messages", {"x-api-key": "k"}
    versioned = {**key, "anthropic-version": "2023-06-01"}
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 5, "messages": MESSAGES}
    missing_version = httpx.post(url, json=body, headers=key)
    assert missing_version.status_code == 400
    assert missing_version.json()["error"]["message"] == "anthropic-version: header is required"
    no_max = httpx.post(url, json={"model": MODEL, "messages": MESSAGES}, headers=versioned)
    assert no_max.status_code == 400
    assert no_max.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }
    bad_header = httpx.post(url, json=body, headers={**versioned, "X-Mock-Service-Tier": "a b"})
    assert bad_header.status_code == 400
    assert "X-Mock-Service-Tier" in bad_header.json()["error"]["message"]


def test_a_configured_key_is_checked_in_either_header_anthropic_takes() -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": MESSAGES}
    version = {"anthropic-version": "2023-06-01"}
    with MockServer(MockConfig(time_scale=0, api_key="sk-ant-right")) as server:
        right = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-right", max_retries=0)
        wrong = anthropic.Anthropic(base_url=server.url, api_key="sk-ant-wrong", max_retries=0)
        with right, wrong:
            assert right.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES).content
            with pytest.raises(anthropic.AuthenticationError):
                wrong.messages.create(model=MODEL, max_tokens=5, messages=MESSAGES)
        url = f"{server.url}/v1/messages"
        keyed = httpx.post(url, json=body, headers={**version, "x-api-key": "sk-ant-right"})
        assert keyed.status_code == 200
        unkeyed = httpx.post(url, json=body, headers=version)
        assert unkeyed.status_code == 401
        assert unkeyed.json()["error"]["type"] == "authentication_error"


def test_responses_report_cache_reads_and_writes_reasoning_searches_and_tier(
    client: openai.OpenAI,
) -> None:
    reply = client.responses.create(
        model="gpt-4o-mini",
        input="hello",
        service_tier="flex",
        extra_headers={
            "X-Mock-Prompt-Tokens": "2000",
            "X-Mock-Cached-Tokens": "1024",
            "X-Mock-Cache-Write-Tokens": "512",
            "X-Mock-Completion-Tokens": "40",
            "X-Mock-Reasoning-Tokens": "10",
            "X-Mock-Web-Search-Requests": "2",
        },
    )
    assert reply.id.startswith("resp_") and reply.status == "completed"
    assert reply.service_tier == "flex"
    usage = reply.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (2000, 40, 2040)
    assert usage.input_tokens_details.cached_tokens == 1024
    assert usage.input_tokens_details.cache_write_tokens == 512
    assert usage.output_tokens_details.reasoning_tokens == 10
    kinds = [item.type for item in reply.output]
    assert kinds == ["web_search_call", "web_search_call", "reasoning", "message"]
    assert reply.tool_usage is not None and reply.tool_usage.web_search.num_requests == 2
    assert reply.output_text == filler_text(30)


def test_responses_tier_auto_is_served_as_default(client: openai.OpenAI) -> None:
    assert client.responses.create(model="m", input="x", service_tier="auto").service_tier == (
        "default"
    )
    chat = client.chat.completions.create(model="m", messages=MESSAGES, service_tier="priority")
    assert chat.service_tier == "priority"


def test_responses_stream_ends_with_the_whole_answers_usage(client: openai.OpenAI) -> None:
    headers = {"X-Mock-Completion-Tokens": "50", "X-Mock-Cached-Tokens": "1024"}
    whole = client.responses.create(model="gpt-4o", input="hello", extra_headers=headers)
    events = list(
        client.responses.create(model="gpt-4o", input="hello", stream=True, extra_headers=headers)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == filler_text(50)
    last = events[-1]
    assert last.type == "response.completed"
    assert last.response.usage == whole.usage


def test_responses_max_output_tokens_cut_is_incomplete(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="m", input="hello", max_output_tokens=16)
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage is not None and reply.usage.output_tokens == 16
    events = list(client.responses.create(model="m", input="x", max_output_tokens=16, stream=True))
    assert events[-1].type == "response.incomplete"


def test_responses_refusal_is_a_refusal_part(client: openai.OpenAI) -> None:
    reply = client.responses.create(
        model="m", input="x", extra_headers={"X-Mock-Finish-Reason": "refusal"}
    )
    message = reply.output[-1]
    assert message.type == "message" and message.content[0].type == "refusal"
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="m", input="x", max_output_tokens=4)
    assert raised.value.param == "max_output_tokens"


def test_responses_errors_are_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="m", input="x", extra_headers={"X-Mock-Error": "rate_limit"})


def test_chat_reports_cache_writes_and_refusals(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        extra_headers={"X-Mock-Prompt-Tokens": "2000", "X-Mock-Cache-Write-Tokens": "700"},
    )
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cache_write_tokens == 700
    refused = client.chat.completions.create(
        model="m", messages=MESSAGES, extra_headers={"X-Mock-Finish-Reason": "refusal"}
    )
    assert refused.choices[0].finish_reason == "stop"
    assert refused.choices[0].message.content is None and refused.choices[0].message.refusal


def test_cache_controls_must_fit_the_prompt() -> None:
    with pytest.raises(ControlError, match="X-Mock-Cache-Write-1h-Tokens"):
        read_controls(
            [(b"x-mock-cache-write-tokens", b"10"), (b"x-mock-cache-write-1h-tokens", b"11")]
        )
    with pytest.raises(ControlError, match="X-Mock-Prompt-Tokens"):
        read_controls(
            [
                (b"x-mock-prompt-tokens", b"100"),
                (b"x-mock-cached-tokens", b"60"),
                (b"x-mock-cache-write-tokens", b"50"),
            ]
        )


@pytest.mark.parametrize(
    "module", ["aivitals.mock_llm.anthropic", "aivitals.mock_llm.responses", "aivitals.finish"]
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0
