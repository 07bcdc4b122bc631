"""The real openai client, instrumented, against the project's fake upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import aivitals
from aivitals.mock_llm import MockConfig, MockServer

from .conftest import Recorded

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=1, hang_s=2.0)) as server:
        yield server


@pytest.fixture
def client(upstream: MockServer, recorded: Recorded) -> openai.OpenAI:
    return aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )


@pytest.fixture
def async_client(upstream: MockServer, recorded: Recorded) -> openai.AsyncOpenAI:
    return aivitals.instrument(
        openai.AsyncOpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )


def told(**values: object) -> dict[str, str]:
    """X-Mock-* headers telling the fake upstream what to answer."""
    return {
        f"X-Mock-{name.replace('_', '-').title().replace('Ttft', 'TTFT')}": str(v)
        for name, v in values.items()
    }


def test_chat_records_tokens_cost_and_returns_the_clients_own_object(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers=told(
            prompt_tokens=1200, completion_tokens=80, cached_tokens=1024, latency_ms=5
        ),
    )
    assert type(reply) is openai.types.chat.ChatCompletion
    assert reply.usage is not None and reply.usage.prompt_tokens == 1200
    (call,) = recorded.calls()
    assert call.id == aivitals.last_call_id()
    assert (call.input_tokens, call.cached_input_tokens, call.output_tokens) == (1200, 1024, 80)
    # gpt-4o-mini: 176 x 0.15 + 1024 x 0.075 + 80 x 0.6 = 26.4 + 76.8 + 48 = 151.2 µ$ (by hand).
    assert call.cost_usd == Decimal("0.0001512")
    assert (call.provider, call.operation, call.status, call.finish_reason) == (
        "openai",
        "chat",
        "ok",
        "stop",
    )
    assert call.response_model == "gpt-4o-mini"


def test_reasoning_tokens_are_output_not_extra(client: openai.OpenAI, recorded: Recorded) -> None:
    client.chat.completions.create(
        model="o3-mini",
        messages=MESSAGES,
        extra_headers=told(
            prompt_tokens=500, completion_tokens=1500, reasoning_tokens=1200, latency_ms=1
        ),
    )
    (call,) = recorded.calls()
    assert (call.output_tokens, call.reasoning_tokens) == (1500, 1200)
    assert call.cost_usd == Decimal("0.00715")  # 500 x 1.1 + 1500 x 4.4 µ$, by hand


def test_stream_usage_ttft_and_the_extra_chunk_is_hidden(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=told(prompt_tokens=300, completion_tokens=40, latency_ms=400, ttft_ms=150),
    )
    assert type(stream) is openai.Stream
    chunks = list(stream)
    assert chunks and all(chunk.choices for chunk in chunks), "the usage chunk we asked for leaked"
    (call,) = recorded.calls()
    assert (call.input_tokens, call.output_tokens, call.tokens_estimated) == (300, 40, False)
    assert call.ttft_ms is not None and 150 <= call.ttft_ms < call.latency_ms
    assert call.latency_ms >= 400
    labels = {"provider": "openai", "model": "gpt-4o"}
    assert recorded.metric("aivitals_time_to_first_token_seconds_count", labels) == 1


def test_caller_who_asked_for_usage_still_gets_it(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=told(prompt_tokens=10, completion_tokens=5, latency_ms=1),
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert recorded.calls()[0].output_tokens == 5


def test_stream_without_usage_is_estimated_and_flagged(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": False},
        extra_headers=told(completion_tokens=12, latency_ms=1),
    )
    list(stream)
    (call,) = recorded.calls()
    assert call.tokens_estimated
    assert call.output_tokens > 0 and call.input_tokens > 0


def test_stream_closed_early_is_cancelled(client: openai.OpenAI, recorded: Recorded) -> None:
    with client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=told(completion_tokens=200, latency_ms=300, ttft_ms=10),
    ) as stream:
        for _ in stream:
            break
    (call,) = recorded.calls()
    assert call.status == "cancelled" and call.tokens_estimated


def test_stream_cut_by_the_upstream_is_an_error(client: openai.OpenAI, recorded: Recorded) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=told(completion_tokens=100, latency_ms=50, error="stream_cut"),
    )
    with pytest.raises(openai.APIError):
        list(stream)
    (call,) = recorded.calls()
    assert call.status == "error" and call.error_type == "provider_down"


@pytest.mark.parametrize(
    ("injected", "exception", "error_type", "http_status"),
    [
        ("rate_limit", openai.RateLimitError, "rate_limit", 429),
        ("context_length", openai.BadRequestError, "context_window_exceeded", 400),
        ("content_filter", openai.BadRequestError, "content_filter", 400),
        ("server_error", openai.InternalServerError, "provider_down", 500),
        ("unavailable", openai.InternalServerError, "provider_down", 503),
        ("auth", openai.AuthenticationError, "auth", 401),
        # The client does not wrap a body that is not JSON: json.JSONDecodeError reaches the caller.
        ("malformed", json.JSONDecodeError, "invalid_response", None),
    ],
)
def test_injected_errors_are_classified_and_reraised(
    client: openai.OpenAI,
    recorded: Recorded,
    injected: str,
    exception: type[Exception],
    error_type: str,
    http_status: int | None,
) -> None:
    with pytest.raises(exception):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=told(error=injected)
        )
    (call,) = recorded.calls()
    assert (call.status, call.error_type) == ("error", error_type)
    if http_status is not None:
        assert call.http_status == http_status
    labels = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "operation": "chat",
        "status": "error",
        "error_type": error_type,
    }
    assert recorded.metric("aivitals_requests_total", labels) == 1


def test_timeout(client: openai.OpenAI, recorded: Recorded) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, timeout=0.3, extra_headers=told(error="timeout")
        )
    (call,) = recorded.calls()
    assert call.error_type == "timeout" and 300 <= call.latency_ms < 2000


def test_embeddings_and_legacy_completions(client: openai.OpenAI, recorded: Recorded) -> None:
    client.embeddings.create(model="text-embedding-3-small", input=["a b c", "d e f"])
    client.completions.create(
        model="gpt-4o-mini", prompt="Say hi", extra_headers=told(completion_tokens=3, latency_ms=1)
    )
    embedding, completion = recorded.calls()
    assert embedding.operation == "embeddings" and embedding.input_tokens > 0
    assert embedding.output_tokens == 0 and embedding.cost_usd is not None
    assert completion.operation == "text_completion" and completion.output_tokens == 3


def test_attribution_from_context_headers_and_user_field(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    with aivitals.context(team="search", feature="rerank"):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            user="u-77",
            extra_headers={
                **told(latency_ms=1),
                "X-Aivitals-Feature": "suggest",
                "X-Aivitals-Tag-Exp": "b",
            },
        )
    (call,) = recorded.calls()
    assert (call.team, call.feature, call.user, call.tags) == (
        "search",
        "suggest",
        "u-77",
        {"exp": "b"},
    )


def test_instrument_is_idempotent(client: openai.OpenAI, recorded: Recorded) -> None:
    aivitals.instrument(client)
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=told(latency_ms=1)
    )
    assert len(recorded.calls()) == 1


def test_async_chat_and_stream(async_client: openai.AsyncOpenAI, recorded: Recorded) -> None:
    async def main() -> None:
        reply = await async_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers=told(prompt_tokens=100, completion_tokens=10, latency_ms=1),
        )
        assert type(reply) is openai.types.chat.ChatCompletion
        stream = await async_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers=told(prompt_tokens=50, completion_tokens=20, latency_ms=100, ttft_ms=30),
        )
        assert type(stream) is openai.AsyncStream
        chunks = [chunk async for chunk in stream]
        assert all(chunk.choices for chunk in chunks)
        await async_client.close()

    asyncio.run(main())
    first, second = recorded.calls()
    assert (first.input_tokens, first.output_tokens) == (100, 10)
    assert (second.input_tokens, second.output_tokens) == (50, 20)
    assert second.ttft_ms is not None and 30 <= second.ttft_ms < second.latency_ms


def test_async_error(async_client: openai.AsyncOpenAI, recorded: Recorded) -> None:
    async def main() -> None:
        with pytest.raises(openai.RateLimitError):
            await async_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers=told(error="rate_limit")
            )
        await async_client.close()

    asyncio.run(main())
    assert recorded.calls()[0].error_type == "rate_limit"
