"""The real anthropic client, instrumented, against the project's fake upstream (and, for what
the fake upstream cannot say, canned real-shaped bodies over httpx2's MockTransport).

Expected costs come from genai-prices called directly, never from aivitals' pricing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import anthropic
import genai_prices
import httpx2
import pytest
from anthropic.types import MessageParam

import aivitals
from aivitals.attribution import Attribution
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.sdk import anthropic_client, wrapping

from .conftest import Recorded
from .support.otel import global_tracing

MODEL = "claude-haiku-4-5"  # priced with 5-minute and 1-hour cache writes and web searches
MESSAGES: list[MessageParam] = [{"role": "user", "content": "hello there"}]

# 3000 input tokens in all: 1000 read from the cache, 1500 written (500 of them for an hour),
# 500 plain; 2 web searches; 40 output tokens.
BILL = {
    "prompt_tokens": 3000,
    "cached_tokens": 1000,
    "cache_write_tokens": 1500,
    "cache_write_1h_tokens": 500,
    "web_search_requests": 2,
    "completion_tokens": 40,
}


def told(**values: object) -> dict[str, str]:
    """X-Mock-* headers telling the fake upstream what to answer."""
    names = {"ttft_ms": "TTFT-Ms", "cache_write_1h_tokens": "Cache-Write-1h-Tokens"}
    return {
        "X-Mock-" + names.get(name, name.replace("_", "-").title()): str(v)
        for name, v in values.items()
    }


def expected_cost(**extra: Any) -> Decimal:
    """The bill above, as genai-prices prices it."""
    usage = genai_prices.Usage(
        input_tokens=3000,
        cache_read_tokens=1000,
        cache_write_tokens=1500,
        cache_write_1h_tokens=500,
        output_tokens=40,
        web_searches=2,
        **extra,
    )
    return genai_prices.calc_price(usage, MODEL, provider_id="anthropic").total_price


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=3, hang_s=2.0)) as server:
        yield server


@pytest.fixture
def client(upstream: MockServer, recorded: Recorded) -> anthropic.Anthropic:
    return aivitals.instrument(
        anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    )


@pytest.fixture
def async_client(upstream: MockServer, recorded: Recorded) -> anthropic.AsyncAnthropic:
    return aivitals.instrument(
        anthropic.AsyncAnthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    )


def figures(call: aivitals.Call) -> tuple[object, ...]:
    return (
        call.input_tokens,
        call.cached_input_tokens,
        call.cache_write_tokens,
        call.cache_write_1h_tokens,
        call.output_tokens,
        call.server_tool_uses,
        call.tokens_estimated,
        call.cost_usd,
    )


def test_message_records_cache_writes_by_lifetime_tool_uses_tier_and_cost(
    client: anthropic.Anthropic, recorded: Recorded
) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=told(**BILL, latency_ms=1)
    )
    assert type(message) is anthropic.types.Message
    (call,) = recorded.calls()
    assert call.id == aivitals.last_call_id()
    assert figures(call) == (3000, 1000, 1500, 500, 40, {"web_search": 2}, False, expected_cost())
    # The 1-hour writes at the 1-hour rate: 500 x ($2 - $1.25) per MTok more than as 5-minute ones.
    as_5m = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=3000,
            cache_read_tokens=1000,
            cache_write_tokens=1500,
            output_tokens=40,
            web_searches=2,
        ),
        MODEL,
        provider_id="anthropic",
    ).total_price
    assert call.cost_usd is not None and call.cost_usd - as_5m == Decimal("0.000375")
    assert (call.provider, call.operation, call.status, call.finish_reason) == (
        "anthropic",
        "chat",
        "ok",
        "stop",
    )
    assert (call.response_model, call.service_tier) == (MODEL, "standard")


def _create_stream(client: anthropic.Anthropic, headers: dict[str, str]) -> None:
    stream = client.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, stream=True, extra_headers=headers
    )
    assert type(stream) is anthropic.Stream
    events = list(stream)
    assert [e.type for e in events][-1] == "message_stop"


def _helper_text(client: anthropic.Anthropic, headers: dict[str, str]) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
    ) as stream:
        assert "".join(stream.text_stream)


def _helper_events(client: anthropic.Anthropic, headers: dict[str, str]) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
    ) as stream:
        kinds = [event.type for event in stream]
    assert "text" in kinds and kinds[-1] == "message_stop"


def _helper_final_message(client: anthropic.Anthropic, headers: dict[str, str]) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
    ) as stream:
        final = stream.get_final_message()
    # The helper's own accumulation of message_start and message_delta agrees with the record.
    assert final.usage.output_tokens == 40


def _helper_until_done(client: anthropic.Anthropic, headers: dict[str, str]) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
    ) as stream:
        stream.until_done()


@pytest.mark.parametrize(
    "consume",
    [_create_stream, _helper_text, _helper_events, _helper_final_message, _helper_until_done],
)
def test_streamed_tokens_and_cost_equal_the_non_streamed_answers(
    client: anthropic.Anthropic,
    recorded: Recorded,
    consume: Callable[[anthropic.Anthropic, dict[str, str]], None],
) -> None:
    client.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=told(**BILL, latency_ms=1)
    )
    consume(client, told(**BILL, latency_ms=300, ttft_ms=120))
    whole, streamed = recorded.calls()
    assert figures(streamed) == figures(whole)
    assert streamed.cost_usd == expected_cost()
    assert (streamed.finish_reason, streamed.service_tier) == ("stop", "standard")
    assert streamed.ttft_ms is not None and 120 <= streamed.ttft_ms < streamed.latency_ms
    assert whole.ttft_ms is None


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("length", "length"), ("tool_calls", "tool_calls"), ("refusal", "refusal")],
)
@pytest.mark.parametrize("stream", [False, True])
def test_stop_reasons_are_mapped(
    client: anthropic.Anthropic, recorded: Recorded, finish: str, expected: str, stream: bool
) -> None:
    headers = told(finish_reason=finish, completion_tokens=5, latency_ms=1)
    if stream:
        with client.messages.stream(
            model=MODEL, max_tokens=5, messages=MESSAGES, extra_headers=headers
        ) as helper:
            anthropic_reason = helper.get_final_message().stop_reason
    else:
        anthropic_reason = client.messages.create(
            model=MODEL, max_tokens=5, messages=MESSAGES, extra_headers=headers
        ).stop_reason
    assert anthropic_reason != expected or expected == "refusal"
    (call,) = recorded.calls()
    assert call.finish_reason == expected


@pytest.mark.parametrize(
    ("injected", "exception", "error_type", "http_status"),
    [
        ("rate_limit", anthropic.RateLimitError, "rate_limit", 429),
        ("unavailable", anthropic.APIStatusError, "provider_down", 529),
        ("context_length", anthropic.BadRequestError, "context_window_exceeded", 400),
        ("auth", anthropic.AuthenticationError, "auth", 401),
        ("server_error", anthropic.InternalServerError, "provider_down", 500),
    ],
)
def test_errors_are_classified_and_reraised(
    client: anthropic.Anthropic,
    recorded: Recorded,
    injected: str,
    exception: type[Exception],
    error_type: str,
    http_status: int,
) -> None:
    with pytest.raises(exception):
        client.messages.create(
            model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers=told(error=injected)
        )
    (call,) = recorded.calls()
    assert (call.status, call.error_type, call.http_status) == ("error", error_type, http_status)
    assert call.provider == "anthropic"


def test_a_stream_cut_by_the_upstream_is_an_error_with_the_input_it_reported(
    client: anthropic.Anthropic, recorded: Recorded
) -> None:
    # The anthropic client lets httpx2's error out of a stream unwrapped.
    with (
        pytest.raises(httpx2.RemoteProtocolError),
        client.messages.stream(
            model=MODEL,
            max_tokens=100,
            messages=MESSAGES,
            extra_headers=told(**BILL, latency_ms=50, error="stream_cut"),
        ) as stream,
    ):
        stream.until_done()
    (call,) = recorded.calls()
    assert (call.status, call.error_type) == ("error", "provider_down")
    # message_start said the input; the output never came, so it is estimated and flagged.
    assert (call.input_tokens, call.cache_write_1h_tokens, call.tokens_estimated) == (
        3000,
        500,
        True,
    )


def test_a_stream_left_early_is_cancelled(client: anthropic.Anthropic, recorded: Recorded) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=MESSAGES,
        extra_headers=told(completion_tokens=200, latency_ms=300, ttft_ms=10),
    ) as stream:
        for _ in stream.text_stream:
            break
    (call,) = recorded.calls()
    assert (call.status, call.tokens_estimated) == ("cancelled", True)


def test_attribution_from_metadata_headers_context_and_instrument(
    upstream: MockServer, recorded: Recorded
) -> None:
    client = aivitals.instrument(
        anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0),
        team="search",
        environment="prod",
    )
    with aivitals.context(user="from-context", feature="outer"):
        client.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=MESSAGES,
            metadata={"user_id": "u-42"},
            extra_headers={"X-Aivitals-Feature": "summarise", **told(latency_ms=1)},
        )
    (call,) = recorded.calls()
    assert (call.user, call.feature, call.team, call.environment) == (
        "u-42",
        "summarise",
        "search",
        "prod",
    )


def test_trace_headers_go_upstream_and_the_callers_own_win(
    client: anthropic.Anthropic,
    upstream: MockServer,
    recorded: Recorded,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    theirs = "00-11111111111111111111111111111111-2222222222222222-01"
    monkeypatch.setattr(
        wrapping, "trace_headers", lambda: {"traceparent": ours, "tracestate": "a=1"}
    )
    client.messages.create(
        model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers=told(latency_ms=1)
    )
    with client.messages.stream(
        model=MODEL,
        max_tokens=10,
        messages=MESSAGES,
        extra_headers={"TraceParent": theirs, **told(latency_ms=1)},
    ) as stream:
        stream.until_done()
    first, second = (dict(r["headers"]) for r in upstream.requests()[-2:])
    assert (first["traceparent"], first["tracestate"]) == (ours, "a=1")
    assert (second["traceparent"], second["tracestate"]) == (theirs, "a=1")
    assert len(recorded.calls()) == 2


def test_the_sdks_own_failure_never_reaches_the_application(
    client: anthropic.Anthropic, recorded: Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(usage: object) -> None:
        raise RuntimeError("aivitals bug")

    monkeypatch.setattr(anthropic_client, "usage_from_anthropic", broken)
    message = client.messages.create(
        model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers=told(latency_ms=1)
    )
    assert message.content
    with client.messages.stream(
        model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers=told(latency_ms=1)
    ) as stream:
        assert stream.get_final_text()
    events = list(
        client.messages.create(
            model=MODEL, max_tokens=10, messages=MESSAGES, stream=True, extra_headers=told()
        )
    )
    assert events[-1].type == "message_stop"
    # The calls are still recorded (the latency and outcome survive a usage that cannot be read).
    assert [c.status for c in recorded.calls()] == ["ok", "ok", "ok"]


def test_async_create_stream_and_helper_equal_the_non_streamed_answer(
    async_client: anthropic.AsyncAnthropic, recorded: Recorded
) -> None:
    headers = told(**BILL, latency_ms=20, ttft_ms=5)

    async def run() -> None:
        await async_client.messages.create(
            model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
        )
        stream = await async_client.messages.create(
            model=MODEL, max_tokens=100, messages=MESSAGES, stream=True, extra_headers=headers
        )
        assert type(stream) is anthropic.AsyncStream
        async for _ in stream:
            pass
        async with async_client.messages.stream(
            model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=headers
        ) as helper:
            await helper.get_final_message()
        with pytest.raises(anthropic.RateLimitError):
            await async_client.messages.create(
                model=MODEL,
                max_tokens=100,
                messages=MESSAGES,
                extra_headers=told(error="rate_limit"),
            )
        await async_client.close()

    asyncio.run(run())
    whole, streamed, helped, limited = recorded.calls()
    assert figures(streamed) == figures(helped) == figures(whole)
    assert whole.cost_usd == expected_cost()
    assert streamed.ttft_ms is not None and helped.ttft_ms is not None
    assert (limited.error_type, limited.http_status) == ("rate_limit", 429)


# What the fake upstream does not send: an error event inside a 200 stream, and a message_delta
# whose usage updates the input counts (as Anthropic's newer API versions do).
def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
            "service_tier": "priority",
        },
    },
}
_TEXT = [
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
]


def canned(body: bytes) -> anthropic.Anthropic:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return aivitals.instrument(
        anthropic.Anthropic(
            api_key="sk-ant-test",
            max_retries=0,
            http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
        )
    )


def test_an_overloaded_error_event_inside_a_stream_is_provider_down(recorded: Recorded) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    client = canned(_sse(_START, *_TEXT, error))
    with pytest.raises(anthropic.APIStatusError):
        list(client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, stream=True))
    (call,) = recorded.calls()
    assert (call.status, call.error_type, call.service_tier) == (
        "error",
        "provider_down",
        "priority",
    )


def test_a_message_delta_that_restates_the_input_replaces_it_not_adds_to_it(
    recorded: Recorded,
) -> None:
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": 0,
            "output_tokens": 7,
            "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
        },
    }
    client = canned(_sse(_START, *_TEXT, delta, {"type": "message_stop"}))
    assert client.base_url.host == "api.anthropic.com"
    list(client.messages.create(model=MODEL, max_tokens=7, messages=MESSAGES, stream=True))
    (call,) = recorded.calls()
    assert (call.input_tokens, call.cached_input_tokens, call.output_tokens) == (2010, 2000, 7)
    assert (call.server_tool_uses, call.finish_reason) == ({"web_search": 1}, "length")
    assert (
        call.cost_usd
        == genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=2010, cache_read_tokens=2000, output_tokens=7, web_searches=1
            ),
            MODEL,
            provider_id="anthropic",
        ).total_price
    )


def test_instrumenting_an_openai_client_never_imports_anthropic() -> None:
    code = (
        "import sys, openai, aivitals\n"
        "aivitals.instrument(openai.OpenAI(api_key='sk-test', base_url='http://127.0.0.1:9/v1'))\n"
        "print('anthropic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_track_set_response_of_a_message_keeps_what_the_bill_needs(
    client: anthropic.Anthropic, recorded: Recorded
) -> None:
    raw = anthropic.Anthropic(base_url=client.base_url, api_key="sk-ant-test", max_retries=0)
    message = raw.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=told(**BILL, latency_ms=1)
    )
    with aivitals.track(model=MODEL, provider="anthropic") as call:
        call.set_response(message)
    (recorded_call,) = recorded.calls()
    assert figures(recorded_call) == (
        3000,
        1000,
        1500,
        500,
        40,
        {"web_search": 2},
        False,
        expected_cost(),
    )
    assert (recorded_call.finish_reason, recorded_call.service_tier) == ("stop", "standard")


def test_a_streamed_messages_call_is_a_span_whose_traceparent_went_upstream(
    client: anthropic.Anthropic, upstream: MockServer, recorded: Recorded
) -> None:
    with (
        global_tracing() as spans,
        client.messages.stream(
            model=MODEL, max_tokens=100, messages=MESSAGES, extra_headers=told(**BILL)
        ) as stream,
    ):
        final = stream.get_final_message()
    (call,) = recorded.calls()
    names = {s.name: s for s in spans.get_finished_spans()}
    span = names[f"chat {MODEL}"]
    attributes = dict(span.attributes or {})
    assert attributes["aivitals.call.id"] == call.id
    assert (attributes["gen_ai.response.id"], attributes["gen_ai.usage.output_tokens"]) == (
        final.id,
        40,
    )
    assert attributes["server.address"] == "127.0.0.1"
    # The anthropic client's own span for the request is the call's child, and the traceparent
    # it sends upstream is in the call's trace.
    own = names["anthropic.messages.create"]
    assert own.parent is not None and own.parent.span_id == span.context.span_id
    sent = dict(upstream.requests()[-1]["headers"])
    assert sent["traceparent"].split("-")[1] == call.trace_id


def test_an_async_stream_left_early_is_cancelled(
    async_client: anthropic.AsyncAnthropic, recorded: Recorded
) -> None:
    async def run() -> None:
        async with async_client.messages.stream(
            model=MODEL,
            max_tokens=100,
            messages=MESSAGES,
            extra_headers=told(completion_tokens=200, latency_ms=300, ttft_ms=10),
        ) as stream:
            async for _ in stream.text_stream:
                break
        await async_client.close()

    asyncio.run(run())
    (call,) = recorded.calls()
    assert (call.status, call.tokens_estimated) == ("cancelled", True)


def test_a_stream_helper_of_an_unknown_layout_is_left_alone(
    recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    class Manager:  # a future client's helper, without the request aivitals knows how to wrap
        def __enter__(self) -> str:
            return "the application's stream"

        def __exit__(self, *exc: object) -> None:
            pass

    def stream(**kwargs: object) -> Manager:
        return Manager()

    target = wrapping.Target(provider="anthropic", base_url=None, defaults=Attribution())
    helper = wrapping.wrap_stream_helper(
        stream,
        anthropic_client.MessagesApi(),
        target,
        manager_attr="_MessageStreamManager__api_request",
        is_async=False,
    )
    with helper(model=MODEL, max_tokens=10, messages=MESSAGES) as got:
        assert got == "the application's stream"
    assert "stream helper is not recorded" in caplog.text
    (call,) = recorded.calls()
    assert (call.model, call.tokens_estimated) == (MODEL, True)
