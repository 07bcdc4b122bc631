"""The real openai client's Responses API, instrumented, against the project's fake upstream
(and, for what the fake upstream cannot say, canned real-shaped bodies over httpx2's
MockTransport). Expected costs come from genai-prices called directly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import genai_prices
import httpx2
import openai
import pytest

import aivitals
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.sdk import openai_responses

from .conftest import Recorded

MODEL = "gpt-5-mini"  # priced at the default and the flex tier
# 3000 input tokens, 1000 of them read from the cache; 200 output tokens, 150 of them reasoning.
BILL = {
    "prompt_tokens": 3000,
    "cached_tokens": 1000,
    "completion_tokens": 200,
    "reasoning_tokens": 150,
}


def told(**values: object) -> dict[str, str]:
    """X-Mock-* headers telling the fake upstream what to answer."""
    names = {"ttft_ms": "TTFT-Ms"}
    return {
        "X-Mock-" + names.get(name, name.replace("_", "-").title()): str(v)
        for name, v in values.items()
    }


def expected_cost(*, tier: str | None = None, **extra: int) -> Decimal:
    usage = genai_prices.Usage(
        input_tokens=3000, cache_read_tokens=1000, output_tokens=200, **extra
    )
    context = {"service_tier": tier} if tier else None
    return genai_prices.calc_price(
        usage, MODEL, provider_id="openai", price_context=context
    ).total_price


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=5, hang_s=2.0)) as server:
        yield server


@pytest.fixture
def client(upstream: MockServer, recorded: Recorded) -> openai.OpenAI:
    return aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )


def figures(call: aivitals.Call) -> tuple[object, ...]:
    return (
        call.input_tokens,
        call.cached_input_tokens,
        call.cache_write_tokens,
        call.output_tokens,
        call.reasoning_tokens,
        call.server_tool_uses,
        call.service_tier,
        call.tokens_estimated,
        call.cost_usd,
    )


def test_a_response_records_its_usage_shape_tier_and_cost(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    response = client.responses.create(
        model=MODEL, input="hello there", extra_headers=told(**BILL, latency_ms=1)
    )
    assert type(response) is openai.types.responses.Response
    (call,) = recorded.calls()
    assert call.id == aivitals.last_call_id()
    assert figures(call) == (3000, 1000, 0, 200, 150, {}, "default", False, expected_cost())
    assert (call.provider, call.operation, call.status, call.finish_reason) == (
        "openai",
        "chat",
        "ok",
        "stop",
    )
    assert call.response_model == MODEL


def test_web_searches_are_counted_and_priced(client: openai.OpenAI, recorded: Recorded) -> None:
    client.responses.create(
        model=MODEL,
        input="what happened today?",
        extra_headers=told(**BILL, web_search_requests=3, latency_ms=1),
    )
    (call,) = recorded.calls()
    assert call.server_tool_uses == {"web_search": 3}
    assert call.cost_usd == expected_cost(web_searches=3)


def test_the_flex_tier_is_recorded_and_priced_at_flex(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    client.responses.create(
        model=MODEL,
        input="hello",
        service_tier="flex",
        extra_headers=told(**BILL, latency_ms=1),
    )
    (call,) = recorded.calls()
    assert call.service_tier == "flex"
    assert call.cost_usd == expected_cost(tier="flex")
    assert call.cost_usd != expected_cost()


def _create_stream(client: openai.OpenAI, headers: dict[str, str]) -> None:
    stream = client.responses.create(model=MODEL, input="hello", stream=True, extra_headers=headers)
    assert type(stream) is openai.Stream
    kinds = [event.type for event in stream]
    assert kinds[-1] == "response.completed"


def _helper_final(client: openai.OpenAI, headers: dict[str, str]) -> None:
    with client.responses.stream(model=MODEL, input="hello", extra_headers=headers) as stream:
        final = stream.get_final_response()
    assert final.usage is not None and final.usage.output_tokens == 200


def _helper_events(client: openai.OpenAI, headers: dict[str, str]) -> None:
    with client.responses.stream(model=MODEL, input="hello", extra_headers=headers) as stream:
        kinds = [event.type for event in stream]
    assert "response.output_text.delta" in kinds


@pytest.mark.parametrize("consume", [_create_stream, _helper_final, _helper_events])
def test_a_stream_equals_the_whole_response_once(
    client: openai.OpenAI,
    recorded: Recorded,
    consume: Callable[[openai.OpenAI, dict[str, str]], None],
) -> None:
    client.responses.create(model=MODEL, input="hello", extra_headers=told(**BILL, latency_ms=1))
    consume(client, told(**BILL, latency_ms=300, ttft_ms=120))
    whole, streamed = recorded.calls()  # the helper's call is recorded once, not twice
    assert figures(streamed) == figures(whole)
    assert streamed.finish_reason == "stop"
    assert streamed.ttft_ms is not None and 120 <= streamed.ttft_ms < streamed.latency_ms


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("length", "length"), ("refusal", "refusal"), ("content_filter", "content_filter")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_outcomes_are_finish_reasons(
    client: openai.OpenAI, recorded: Recorded, finish: str, expected: str, stream: bool
) -> None:
    headers = told(finish_reason=finish, completion_tokens=8, latency_ms=1)
    if stream:
        list(client.responses.create(model=MODEL, input="hi", stream=True, extra_headers=headers))
    else:
        client.responses.create(model=MODEL, input="hi", extra_headers=headers)
    (call,) = recorded.calls()
    assert (call.status, call.finish_reason, call.tokens_estimated) == ("ok", expected, False)


@pytest.mark.parametrize(
    ("injected", "exception", "error_type", "http_status"),
    [
        ("rate_limit", openai.RateLimitError, "rate_limit", 429),
        ("context_length", openai.BadRequestError, "context_window_exceeded", 400),
        ("unavailable", openai.InternalServerError, "provider_down", 503),
    ],
)
def test_errors_are_classified_and_reraised(
    client: openai.OpenAI,
    recorded: Recorded,
    injected: str,
    exception: type[Exception],
    error_type: str,
    http_status: int,
) -> None:
    with pytest.raises(exception):
        client.responses.create(model=MODEL, input="hi", extra_headers=told(error=injected))
    (call,) = recorded.calls()
    assert (call.status, call.error_type, call.http_status) == ("error", error_type, http_status)


def test_a_stream_left_early_is_cancelled(client: openai.OpenAI, recorded: Recorded) -> None:
    with client.responses.stream(
        model=MODEL, input="hi", extra_headers=told(completion_tokens=200, latency_ms=300)
    ) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    (call,) = recorded.calls()
    assert (call.status, call.tokens_estimated) == ("cancelled", True)


def test_user_and_safety_identifier_attribute_the_call(
    client: openai.OpenAI, recorded: Recorded
) -> None:
    client.responses.create(model=MODEL, input="hi", user="u-1", extra_headers=told(latency_ms=1))
    client.responses.create(
        model=MODEL,
        input="hi",
        safety_identifier="u-2",
        extra_headers={"X-Aivitals-Team": "growth", **told(latency_ms=1)},
    )
    first, second = recorded.calls()
    assert (first.user, second.user, second.team) == ("u-1", "u-2", "growth")


def test_the_sdks_own_failure_never_reaches_the_application(
    client: openai.OpenAI, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(usage: object) -> None:
        raise RuntimeError("aivitals bug")

    monkeypatch.setattr(openai_responses, "usage_from_openai", broken)
    assert client.responses.create(model=MODEL, input="hi", extra_headers=told(latency_ms=1)).output
    with client.responses.stream(model=MODEL, input="hi", extra_headers=told(latency_ms=1)) as s:
        assert s.get_final_response().output
    assert [c.status for c in recorded.calls()] == ["ok", "ok"]


def test_async_create_and_stream(upstream: MockServer, recorded: Recorded) -> None:
    client = aivitals.instrument(
        openai.AsyncOpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )
    headers = told(**BILL, latency_ms=20, ttft_ms=5)

    async def run() -> None:
        await client.responses.create(model=MODEL, input="hi", extra_headers=headers)
        async for _ in await client.responses.create(
            model=MODEL, input="hi", stream=True, extra_headers=headers
        ):
            pass
        async with client.responses.stream(model=MODEL, input="hi", extra_headers=headers) as s:
            await s.get_final_response()
        await client.close()

    asyncio.run(run())
    whole, streamed, helped = recorded.calls()
    assert figures(streamed) == figures(helped) == figures(whole)
    assert whole.cost_usd == expected_cost()
    assert helped.ttft_ms is not None


# What the fake upstream does not send: a response that failed inside a 200 stream, a file search.
def canned(events: list[dict[str, Any]]) -> openai.OpenAI:
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return aivitals.instrument(
        openai.OpenAI(
            api_key="sk-test",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
        )
    )


def _response(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": MODEL,
        "status": status,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        **fields,
    }


def test_a_failed_response_in_a_stream_is_an_error_of_its_code(recorded: Recorded) -> None:
    failed = _response("failed", error={"code": "server_error", "message": "try again"})
    client = canned(
        [
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": _response("in_progress"),
            },
            {"type": "response.failed", "sequence_number": 1, "response": failed},
        ]
    )
    list(client.responses.create(model=MODEL, input="hi", stream=True))
    (call,) = recorded.calls()
    assert (call.status, call.error_type) == ("error", "provider_down")
    assert call.error_message is not None and "try again" in call.error_message


def test_file_searches_and_tool_calls_from_the_output_items(recorded: Recorded) -> None:
    usage = {
        "input_tokens": 900,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 930,
    }
    output = [
        {"id": "fs_1", "type": "file_search_call", "status": "completed", "queries": ["q"]},
        {"id": "fs_2", "type": "file_search_call", "status": "completed", "queries": ["r"]},
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    done = _response("completed", output=output, usage=usage, service_tier="priority")
    client = canned([{"type": "response.completed", "sequence_number": 0, "response": done}])
    list(client.responses.create(model=MODEL, input="hi", stream=True))
    (call,) = recorded.calls()
    assert (call.server_tool_uses, call.finish_reason, call.service_tier) == (
        {"file_search": 2},
        "tool_calls",
        "priority",
    )
