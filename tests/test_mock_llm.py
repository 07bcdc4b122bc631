"""`aivitals.mock_llm` against the real openai client, sync and async, over real sockets."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aivitals.config import ConfigError
from aivitals.errors import classify_error
from aivitals.mock_llm import ERROR_KINDS, MockConfig, MockServer
from aivitals.mock_llm.controls import ControlError, Controls, read_controls
from aivitals.mock_llm.plan import Planner
from aivitals.mock_llm.shapes import MAX_TEXT_WORDS, filler_pieces, filler_text

MESSAGES: list[Any] = [{"role": "user", "content": "Say something."}]

# Quick by default (a few ms per request), so timing tests set their latency by header.
FAST = MockConfig(latency_median_ms=2.0, ttft_median_ms=1.0, latency_sigma=0.0)


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer(FAST) as running:
        yield running


@pytest.fixture
def client(server: MockServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as made:
        yield made


def chat(client: openai.OpenAI, **headers: str) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
    )


@pytest.mark.slow
def test_chat_reports_the_token_counts_the_headers_ask_for(client: openai.OpenAI) -> None:
    reply = chat(
        client,
        **{
            "X-Mock-Prompt-Tokens": "1500",
            "X-Mock-Completion-Tokens": "40",
            "X-Mock-Cached-Tokens": "1024",
            "X-Mock-Reasoning-Tokens": "10",
        },
    )
    assert reply.id.startswith("chatcmpl-")
    assert reply.object == "chat.completion"
    assert reply.model == "gpt-4o-mini"
    usage = reply.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1500, 40, 1540)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1024
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 10
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    # Reasoning is part of the completion count but not of the text.
    assert len((choice.message.content or "").split()) == 30


@pytest.mark.slow
def test_chat_without_headers_estimates_the_prompt_and_draws_the_completion(
    client: openai.OpenAI,
) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x" * 40}]
    )
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 40 // 4 + 4
    completion = reply.usage.completion_tokens
    assert FAST.completion_tokens_min <= completion <= FAST.completion_tokens_max
    assert len((reply.choices[0].message.content or "").split()) == completion


@pytest.mark.slow
def test_max_tokens_caps_the_completion_with_finish_reason_length(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=5
    )
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "length"
    forced = chat(client, **{"X-Mock-Finish-Reason": "content_filter"})
    assert forced.choices[0].finish_reason == "content_filter"


@pytest.mark.slow
async def test_stream_with_include_usage_is_incremental_and_ends_with_usage(
    server: MockServer,
) -> None:
    arrivals: list[float] = []
    chunks: list[Any] = []
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0
    ) as client:
        started = time.monotonic()
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={
                "X-Mock-Latency-Ms": "400",
                "X-Mock-TTFT-Ms": "50",
                "X-Mock-Completion-Tokens": "100",
            },
        )
        async for chunk in stream:
            arrivals.append(time.monotonic() - started)
            chunks.append(chunk)
    assert 0.04 <= arrivals[0] < 0.25
    assert arrivals[-1] >= 0.38
    assert arrivals[-1] - arrivals[0] > 0.25
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (8, 100)
    with_choices = chunks[:-1]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in with_choices].count("stop") == 1
    assert with_choices[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text == filler_text(100)
    content_chunks = [c for c in with_choices if c.choices[0].delta.content]
    assert 1 < len(content_chunks) <= 64


@pytest.mark.slow
def test_stream_without_include_usage_sends_no_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"X-Mock-Completion-Tokens": "3"},
    )
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == filler_text(3)


@pytest.mark.slow
def test_legacy_completions_whole_and_streamed(client: openai.OpenAI) -> None:
    headers = {"X-Mock-Completion-Tokens": "12"}
    whole = client.completions.create(
        model="gpt-4o-mini", prompt="Once upon a time", extra_headers=headers
    )
    assert whole.id.startswith("cmpl-")
    assert whole.object == "text_completion"
    assert whole.choices[0].text == filler_text(12)
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (4, 12)
    chunks = list(
        client.completions.create(
            model="gpt-4o-mini",
            prompt=["Once upon", " a time"],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == filler_text(12)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 5 + 12  # 3 + 2 tokens for the two prompts


@pytest.mark.slow
def test_embeddings_honour_dimensions_and_depend_only_on_the_input(client: openai.OpenAI) -> None:
    # The openai client asks for base64 unless told otherwise; both encodings must agree.
    as_base64 = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], dimensions=16
    )
    as_floats = client.embeddings.create(
        model="text-embedding-3-small", input="alpha", dimensions=16, encoding_format="float"
    )
    assert [item.index for item in as_base64.data] == [0, 1]
    assert all(len(item.embedding) == 16 for item in as_base64.data)
    assert as_base64.data[0].embedding == pytest.approx(as_floats.data[0].embedding, abs=1e-6)
    assert as_base64.data[0].embedding != as_base64.data[1].embedding
    assert sum(x * x for x in as_floats.data[0].embedding) == pytest.approx(1.0)
    assert (as_base64.usage.prompt_tokens, as_base64.usage.total_tokens) == (3, 3)  # 2 + 1
    default = client.embeddings.create(model="text-embedding-3-small", input="alpha")
    assert len(default.data[0].embedding) == 8


@pytest.mark.slow
def test_embeddings_honour_x_mock_prompt_tokens(client: openai.OpenAI) -> None:
    told = client.embeddings.create(
        model="text-embedding-3-small",
        input="alpha",
        extra_headers={"X-Mock-Prompt-Tokens": "4321"},
    )
    assert (told.usage.prompt_tokens, told.usage.total_tokens) == (4321, 4321)


@pytest.mark.slow
def test_models_lists_the_configured_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [model.id for model in models.data] == list(FAST.models)
    assert all(model.object == "model" for model in models.data)


ERRORS: list[tuple[str, type[Exception], int, str | None, str]] = [
    ("rate_limit", openai.RateLimitError, 429, "rate_limit_exceeded", "rate_limit"),
    (
        "context_length",
        openai.BadRequestError,
        400,
        "context_length_exceeded",
        "context_window_exceeded",
    ),
    ("content_filter", openai.BadRequestError, 400, "content_filter", "content_filter"),
    ("server_error", openai.InternalServerError, 500, None, "provider_down"),
    ("unavailable", openai.InternalServerError, 503, None, "provider_down"),
    ("auth", openai.AuthenticationError, 401, "invalid_api_key", "auth"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "exc_type", "status", "code", "classified"), ERRORS)
def test_injected_status_errors_raise_the_matching_openai_exception(
    client: openai.OpenAI,
    kind: str,
    exc_type: type[openai.APIStatusError],
    status: int,
    code: str | None,
    classified: str,
) -> None:
    with pytest.raises(exc_type) as caught:
        chat(client, **{"X-Mock-Error": kind})
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.message
    # aivitals' own classifier reads the body the way it would read production's.
    assert classify_error(caught.value).error_type == classified
    if kind in ("rate_limit", "unavailable"):
        assert caught.value.response.headers["retry-after"] == "1"
    if kind == "context_length":
        assert "maximum context length is 128000 tokens" in caught.value.message


@pytest.mark.slow
def test_latency_is_served_before_an_injected_error(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        chat(client, **{"X-Mock-Error": "rate_limit", "X-Mock-Latency-Ms": "200"})
    assert time.monotonic() - started >= 0.19


@pytest.mark.slow
def test_timeout_hangs_until_the_client_gives_up(client: openai.OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as caught:
        client.with_options(timeout=0.3).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Mock-Error": "timeout"}
        )
    assert 0.3 <= time.monotonic() - started < 5
    assert classify_error(caught.value).error_type == "timeout"


@pytest.mark.slow
def test_timeout_answers_after_the_hang() -> None:
    config = MockConfig(hang_s=0.2, latency_median_ms=0.0, ttft_median_ms=0.0)
    with (
        MockServer(config) as server,
        openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as client,
    ):
        started = time.monotonic()
        reply = chat(client, **{"X-Mock-Error": "timeout"})
        assert time.monotonic() - started >= 0.19
        assert reply.choices[0].message.content


@pytest.mark.slow
def test_malformed_raises_a_json_decode_error(client: openai.OpenAI) -> None:
    # The openai client hands a 200 JSON body to json.loads and lets its error through.
    with pytest.raises(ValueError) as caught:
        chat(client, **{"X-Mock-Error": "malformed"})
    assert type(caught.value).__name__ == "JSONDecodeError"
    assert classify_error(caught.value).error_type == "invalid_response"
    with pytest.raises(ValueError, match="Unterminated string"):
        list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_headers={"X-Mock-Error": "malformed"},
            )
        )


@pytest.mark.slow
def test_stream_cut_closes_the_connection_halfway(client: openai.OpenAI) -> None:
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Mock-Error": "stream_cut", "X-Mock-Completion-Tokens": "64"},
        )
        received.extend(stream)
    # 64 pieces plus the finish chunk make 65 steps; about half arrive (the first doubles up).
    assert 30 <= len(received) <= 36
    assert all(chunk.choices[0].finish_reason is None for chunk in received)
    assert classify_error(caught.value).error_type == "provider_down"
    with pytest.raises(openai.APIConnectionError):
        chat(client, **{"X-Mock-Error": "stream_cut"})  # a whole reply is cut too


@pytest.mark.slow
def test_a_client_leaving_a_slow_stream_frees_the_server_at_once() -> None:
    slow = {"X-Mock-Latency-Ms": "20000", "X-Mock-TTFT-Ms": "10"}
    with MockServer(MockConfig(time_scale=1)) as server:
        with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as client:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=slow
            )
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
            stream.close()
        stopping = time.monotonic()
    # Well under the 2 s grace uvicorn would otherwise wait before cancelling the request.
    assert time.monotonic() - stopping < 1.5


@pytest.mark.slow
def test_each_request_is_kept_with_the_headers_it_arrived_with(server: MockServer) -> None:
    server.reset()
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    with httpx.Client(base_url=server.url) as raw:
        # Chunked (a generator body has no length): the mock takes it like any other.
        chunked = raw.post(
            "/v1/chat/completions",
            content=iter([body[:20], body[20:]]),
            headers={"content-type": "application/json", "x-test": "chunked", "x-twice": "a"},
        )
        listed = raw.get("/mock/requests").json()["requests"]
    assert chunked.status_code == 200
    assert chunked.json()["choices"][0]["message"]["role"] == "assistant"
    (request,) = server.requests()
    assert listed == [request]
    assert (request["method"], request["path"]) == ("POST", "/v1/chat/completions")
    headers = request["headers"]
    assert ["transfer-encoding", "chunked"] in headers and ["x-test", "chunked"] in headers
    assert "content-length" not in [name for name, _ in headers]


@pytest.mark.slow
def test_every_answer_carries_a_request_id_and_an_edge_cookie(server: MockServer) -> None:
    with httpx.Client(base_url=server.url) as raw:
        answers = [
            raw.post("/v1/embeddings", json={"model": "m", "input": "a"}),
            raw.post("/v1/embeddings", json={"model": "m"}),  # a 400 too
            raw.get("/v1/models"),
        ]
    ids = {answer.headers["x-request-id"] for answer in answers}
    assert len(ids) == 3 and all(i.startswith("req_") for i in ids)
    assert all(answer.headers["set-cookie"].startswith("__cf_bm=") for answer in answers)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_client_hanging_up_before_its_answer_is_counted_as_gone(stream: bool) -> None:
    slow = {"X-Mock-Latency-Ms": "5000", "X-Mock-TTFT-Ms": "5000"}
    with MockServer(MockConfig(time_scale=1)) as server:
        with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server.url) as raw:
            raw.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": MESSAGES, "stream": stream},
                headers=slow,
                timeout=httpx.Timeout(10, read=0.3),
            )
        deadline = time.monotonic() + 10
        while server.stats()["gone"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats()["gone"] == 1


@pytest.mark.slow
def test_seeded_random_decisions_repeat_in_request_order() -> None:
    config = MockConfig(
        seed=1234,
        error_rate=0.5,
        error_types=("rate_limit", "server_error"),
        completion_tokens_min=1,
        completion_tokens_max=1000,
        time_scale=0,
    )

    def outcomes(server: MockServer) -> list[str | int]:
        seen: list[str | int] = []
        with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as client:
            for _ in range(16):
                try:
                    reply = chat(client)
                except openai.APIStatusError as exc:
                    seen.append(type(exc).__name__)
                else:
                    assert reply.usage is not None
                    seen.append(reply.usage.completion_tokens)
        return seen

    with MockServer(config) as first:
        run = outcomes(first)
        first.reset()
        assert outcomes(first) == run
    with MockServer(config) as second:
        assert outcomes(second) == run
    assert {"RateLimitError", "InternalServerError"} <= set(run)
    assert any(isinstance(outcome, int) for outcome in run)
    with MockServer(dataclasses.replace(config, seed=99)) as other:
        assert outcomes(other) != run


@pytest.mark.slow
def test_stats_count_requests_per_endpoint_model_and_error() -> None:
    with (
        MockServer(MockConfig(time_scale=0)) as server,
        openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as client,
    ):
        chat(client)
        chat(client)
        client.embeddings.create(model="text-embedding-3-small", input="a")
        client.models.list()
        with pytest.raises(openai.RateLimitError):
            chat(client, **{"X-Mock-Error": "rate_limit"})
        with httpx.Client(base_url=server.url) as raw:
            raw.post("/v1/chat/completions", content=b"not json")
            over_http = raw.get("/mock/stats").json()
        expected = {
            "total": 6,
            "endpoints": {"/v1/chat/completions": 4, "/v1/embeddings": 1, "/v1/models": 1},
            "models": {"gpt-4o-mini": 3, "text-embedding-3-small": 1},
            "errors": {"rate_limit": 1},
            "gone": 0,
        }
        assert server.stats() == expected
        assert over_http == expected
        server.reset()
        assert server.stats() == {
            "total": 0,
            "endpoints": {},
            "models": {},
            "errors": {},
            "gone": 0,
        }
        assert server.requests() == []


BAD_BODIES: list[tuple[str, bytes, str | None, str]] = [
    ("/v1/chat/completions", b"{not json", None, "could not parse the JSON body"),
    (
        "/v1/chat/completions",
        b'{"model": "m", "messages": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        None,
        "could not parse the JSON body",
    ),
    ("/v1/chat/completions", b"[1, 2]", None, "must be a JSON object"),
    (
        "/v1/chat/completions",
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        "model",
        "model",
    ),
    ("/v1/chat/completions", b'{"model": "gpt-4o"}', "messages", "'messages'"),
    ("/v1/chat/completions", b'{"model": "gpt-4o", "messages": []}', "messages", "empty array"),
    ("/v1/chat/completions", b'{"model": "gpt-4o", "messages": ["hi"]}', "messages[0]", "object"),
    ("/v1/completions", b'{"model": "gpt-4o"}', "prompt", "'prompt'"),
    ("/v1/embeddings", b'{"model": "text-embedding-3-small"}', "input", "'input'"),
    ("/v1/embeddings", b'{"model": "m", "input": "a", "dimensions": 0}', "dimensions", "from 1"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "body", "param", "says"), BAD_BODIES)
def test_bad_bodies_get_openai_shaped_400s(
    server: MockServer, path: str, body: bytes, param: str | None, says: str
) -> None:
    with httpx.Client(base_url=server.url) as raw:
        reply = raw.post(path, content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert says in error["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("header", "value", "says"),
    [
        ("X-Mock-Completion-Tokens", "ten", "whole number"),
        ("X-Mock-Latency-Ms", "-5", "milliseconds"),
        ("X-Mock-Error", "meteor", "rate_limit"),
        ("X-Mock-Finish-Reason", "done", "stop"),
        ("X-Mock-Tokens", "5", "unknown control header"),
    ],
)
def test_bad_control_headers_get_a_clear_400(
    client: openai.OpenAI, header: str, value: str, says: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(client, **{header: value})
    assert caught.value.code == "invalid_mock_header"
    assert says in caught.value.message


@pytest.mark.slow
def test_strict_models_refuse_unknown_models() -> None:
    with (
        MockServer(MockConfig(strict_models=True, time_scale=0)) as server,
        openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0) as client,
    ):
        assert chat(client).model == "gpt-4o-mini"
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model="gpt-9", messages=MESSAGES)
        assert caught.value.code == "model_not_found"
        assert "gpt-9" in caught.value.message


@pytest.mark.slow
def test_unknown_paths_answer_like_openai(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match=r"Invalid URL \(POST /v1/nothing\)"):
        client.post("/nothing", cast_to=object, body={})


@pytest.mark.slow
def test_leaving_the_block_stops_the_thread_and_frees_the_port() -> None:
    with MockServer(MockConfig(time_scale=0)) as server:
        url = server.url
        assert any(url in thread.name for thread in threading.enumerate())
    assert not any(url in thread.name for thread in threading.enumerate())
    with pytest.raises(httpx.ConnectError), httpx.Client() as raw:
        raw.get(url + "/v1/models")


@pytest.mark.slow
def test_serve_announces_its_url_and_stops_on_interrupt() -> None:
    code = (
        "from aivitals.mock_llm import MockConfig, serve; serve(MockConfig(time_scale=0), port=0)"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("aivitals mock-llm listening on http://127.0.0.1:")
            base_url = line.split()[-1]
            assert base_url.endswith("/v1")
            with httpx.Client() as raw:
                assert raw.get(base_url + "/models").status_code == 200
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_config_rejects_values_that_cannot_work() -> None:
    with pytest.raises(ConfigError, match="latency_sigma"):
        MockConfig(latency_sigma=-1)
    with pytest.raises(ConfigError, match="completion_tokens_min"):
        MockConfig(completion_tokens_min=10, completion_tokens_max=5)
    with pytest.raises(ConfigError, match="error_types"):
        MockConfig(error_types=("meteor",))  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(ConfigError, match="models"):
        MockConfig(models=())


def test_controls_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(ControlError, match="must not exceed X-Mock-Prompt-Tokens"):
        read_controls([(b"x-mock-cached-tokens", b"2048"), (b"x-mock-prompt-tokens", b"100")])
    with pytest.raises(ControlError, match="must not exceed X-Mock-Completion-Tokens"):
        read_controls([(b"x-mock-reasoning-tokens", b"9"), (b"x-mock-completion-tokens", b"8")])
    assert read_controls([(b"authorization", b"Bearer x")]) == Controls()


def test_cached_fraction_caches_only_long_prompts_in_steps_of_128() -> None:
    planner = Planner(MockConfig(cached_fraction=1.0, seed=0, time_scale=0))
    assert planner.plan(Controls(), prompt_tokens=1000, cacheable=True).cached_tokens == 0
    assert planner.plan(Controls(), prompt_tokens=1300, cacheable=True).cached_tokens == 1280
    assert planner.plan(Controls(), prompt_tokens=1300, cacheable=False).cached_tokens == 0


@given(words=st.integers(min_value=-5, max_value=MAX_TEXT_WORDS + 50), pieces=st.integers(1, 80))
def test_stream_pieces_always_add_up_to_the_whole_text(words: int, pieces: int) -> None:
    cut = filler_pieces(words, max_pieces=pieces)
    assert "".join(cut) == filler_text(words)
    assert len(cut) == min(max(words, 0), MAX_TEXT_WORDS, pieces)
    assert all(piece.strip() for piece in cut)


@given(
    seed=st.integers(0, 2**32),
    latency_ms=st.none() | st.floats(0, 10_000),
    ttft_ms=st.none() | st.floats(0, 10_000),
    reasoning=st.none() | st.integers(0, 5000),
    max_tokens=st.none() | st.integers(1, 500),
    error=st.none() | st.sampled_from(ERROR_KINDS),
)
def test_plans_keep_their_invariants(
    seed: int,
    latency_ms: float | None,
    ttft_ms: float | None,
    reasoning: int | None,
    max_tokens: int | None,
    error: Any,
) -> None:
    planner = Planner(MockConfig(seed=seed, cached_fraction=0.5, error_rate=0.3))
    controls = Controls(
        latency_ms=latency_ms, ttft_ms=ttft_ms, reasoning_tokens=reasoning, error=error
    )
    plan = planner.plan(controls, prompt_tokens=2000, max_tokens=max_tokens, cacheable=True)
    assert 0 <= plan.ttft_s <= plan.latency_s
    assert 0 <= plan.reasoning_tokens <= plan.completion_tokens
    assert 0 <= plan.cached_tokens <= plan.prompt_tokens
    if max_tokens is not None:
        assert plan.completion_tokens <= max_tokens
    if error is not None:
        assert plan.error == error


@pytest.mark.parametrize(
    "module",
    [
        "",
        ".config",
        ".controls",
        ".plan",
        ".validation",
        ".shapes",
        ".faults",
        ".streaming",
        ".app",
        ".runner",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(f"aivitals.mock_llm{module}"))
    assert result.attempted > 0
    assert result.failed == 0
