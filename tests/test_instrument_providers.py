"""Which provider an instrumented client's calls are recorded (and priced) as, and the chat
completions' service tier. Clients pointed at public APIs answer from httpx2's MockTransport, so
no request leaves the machine."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import genai_prices
import httpx2
import openai
import pytest

import aivitals
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.provider_urls import provider_for_url
from aivitals.sdk.anthropic_client import anthropic_provider

from .conftest import Recorded

_CHAT = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "llama-3.3-70b-versatile",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hi"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100},
}


def offline(base_url: str) -> openai.OpenAI:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=_CHAT)

    return openai.OpenAI(
        api_key="sk-test",
        base_url=base_url,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        ("https://api.groq.com/openai/v1", "groq"),
        ("https://api.together.xyz/v1", "together"),
        ("https://openrouter.ai/api/v1", "openrouter"),
        ("https://api.openai.com/v1", "openai"),
        ("https://api.anthropic.com", "anthropic"),
        ("http://127.0.0.1:8000/v1", None),
        ("http://localhost:11434/v1", None),
        ("https://llm.internal.example.com/v1", None),
    ],
)
def test_a_base_url_names_its_provider(url: str, provider: str | None) -> None:
    assert provider_for_url(url) == provider


def test_an_openai_compatible_provider_is_recorded_as_itself(recorded: Recorded) -> None:
    client = aivitals.instrument(offline("https://api.groq.com/openai/v1"))
    client.chat.completions.create(
        model="llama-3.3-70b-versatile", messages=[{"role": "user", "content": "hi"}]
    )
    (call,) = recorded.calls()
    assert call.provider == "groq"
    expected = genai_prices.calc_price(
        genai_prices.Usage(input_tokens=1000, output_tokens=100),
        "llama-3.3-70b-versatile",
        provider_id="groq",
    ).total_price
    assert call.cost_usd == expected


def test_an_unknown_url_stays_openai_and_provider_wins(recorded: Recorded) -> None:
    local = aivitals.instrument(offline("http://127.0.0.1:8000/v1"))
    named = aivitals.instrument(offline("https://api.groq.com/openai/v1"), provider="acme")
    for client in (local, named):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert [c.provider for c in recorded.calls()] == ["openai", "acme"]


def test_an_anthropic_client_on_an_unknown_url_stays_anthropic(recorded: Recorded) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 2},
            },
        )

    client = aivitals.instrument(
        anthropic.Anthropic(
            api_key="sk-ant-test",
            base_url="http://127.0.0.1:9",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
        )
    )
    client.messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    )
    (call,) = recorded.calls()
    assert (call.provider, call.input_tokens, call.finish_reason) == ("anthropic", 10, "stop")


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=7)) as server:
        yield server


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_record_the_tier_that_served_them(
    upstream: MockServer, recorded: Recorded, stream: bool
) -> None:
    client = aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )
    reply = client.chat.completions.create(
        model="gpt-5-mini",
        messages=[{"role": "user", "content": "hi"}],
        service_tier="flex",
        stream=stream,
        extra_headers={
            "X-Mock-Prompt-Tokens": "2000",
            "X-Mock-Completion-Tokens": "100",
            "X-Mock-Latency-Ms": "1",
        },
    )
    if stream:
        list(reply)
    (call,) = recorded.calls()
    assert call.service_tier == "flex"
    assert (
        call.cost_usd
        == genai_prices.calc_price(
            genai_prices.Usage(input_tokens=2000, output_tokens=100),
            "gpt-5-mini",
            provider_id="openai",
            price_context={"service_tier": "flex"},
        ).total_price
    )


def test_bedrock_and_vertex_clients_are_their_clouds() -> None:
    bedrock = anthropic.AnthropicBedrock(
        aws_region="us-east-1", aws_access_key="key", aws_secret_key="secret"
    )
    vertex = anthropic.AnthropicVertex(region="us-east5", project_id="p", access_token="t")
    assert [anthropic_provider(aivitals.instrument(c)) for c in (bedrock, vertex)] == [
        "aws",
        "google",
    ]
    assert hasattr(bedrock.messages.stream, "__wrapped__")
