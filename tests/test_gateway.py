"""The gateway with the real openai client in front and the project's fake upstream behind."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from starlette.applications import Starlette

from aivitals.gateway.keys import GatewayKey, KeyRing
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call
from aivitals.recorder import Recorder
from aivitals.sinks.memory import MemorySink
from aivitals.sinks.prometheus import PrometheusSink

from .support.servers import serve_in_thread

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


class Rig:
    def __init__(
        self,
        upstream: MockServer,
        origin: str,
        recorder: Recorder,
        memory: MemorySink,
        metrics: PrometheusSink,
    ) -> None:
        self.upstream = upstream
        self.origin = origin
        self.recorder = recorder
        self.memory = memory
        self.metrics = metrics
        self.client = openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-client-key", max_retries=0)

    def calls(self, expected: int = 0) -> list[Call]:
        """The recorded calls; waits (bounded) for ``expected`` of them, since a stream is
        recorded just after its last byte reaches the client."""
        deadline = time.monotonic() + 5
        while True:
            assert self.recorder.flush()
            if len(self.memory.calls) >= expected or time.monotonic() > deadline:
                return list(self.memory.calls)
            time.sleep(0.02)


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=2, hang_s=3.0)) as server:
        yield server


@pytest.fixture
def rig(upstream: MockServer) -> Iterator[Rig]:
    memory = MemorySink()
    metrics = PrometheusSink()
    recorder = Recorder(inline_sinks=[metrics], batch_sinks=[memory], flush_interval_s=0.05)
    upstreams = Upstreams(
        [
            Upstream(
                name="mock",
                base_url=upstream.base_url,
                models=("gpt-4o-mini", "gpt-4o", "text-embedding-3-small"),
                timeout_s=1.0,
            ),
        ]
    )

    gateway = Gateway(recorder=recorder, upstreams=upstreams)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.stop()

    app = Starlette(routes=gateway.routes, lifespan=lifespan)
    with serve_in_thread(app) as origin:
        rig = Rig(upstream, origin, recorder, memory, metrics)
        yield rig
        rig.client.close()
    recorder.close()


def told(**values: object) -> dict[str, str]:
    names = {"ttft_ms": "TTFT-Ms", "latency_ms": "Latency-Ms"}
    return {
        f"X-Mock-{names.get(k, k.replace('_', '-').title())}": str(v) for k, v in values.items()
    }


def test_chat_through_the_gateway(rig: Rig) -> None:
    reply = rig.client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={
            **told(prompt_tokens=1200, completion_tokens=80, cached_tokens=1024, latency_ms=5),
            "X-Aivitals-Team": "search",
            "X-Aivitals-Tag-Exp": "b",
        },
        user="u-1",
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 80
    (call,) = rig.calls()
    assert (call.input_tokens, call.cached_input_tokens, call.output_tokens) == (1200, 1024, 80)
    assert call.cost_usd == Decimal("0.0001512")  # worked by hand in test_instrument_openai
    assert (call.team, call.user, call.tags, call.endpoint) == (
        "search",
        "u-1",
        {"exp": "b"},
        "/v1/chat/completions",
    )


def test_stream_passes_through_incrementally_and_hides_the_usage_chunk(rig: Rig) -> None:
    start = time.perf_counter()
    stream = rig.client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=told(prompt_tokens=300, completion_tokens=40, latency_ms=600, ttft_ms=100),
    )
    arrivals = []
    chunks = []
    for chunk in stream:
        arrivals.append(time.perf_counter() - start)
        chunks.append(chunk)
    assert all(chunk.choices for chunk in chunks), "the usage chunk the gateway asked for leaked"
    assert arrivals[0] < 0.45, "the first chunk waited for the whole stream"
    assert arrivals[-1] >= 0.55
    (call,) = rig.calls(1)
    assert (call.input_tokens, call.output_tokens, call.tokens_estimated) == (300, 40, False)
    assert call.ttft_ms is not None and 100 <= call.ttft_ms < 450


def test_stream_client_asking_for_usage_gets_it(rig: Rig) -> None:
    stream = rig.client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=told(prompt_tokens=10, completion_tokens=5, latency_ms=1),
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15
    (call,) = rig.calls(1)
    assert call.output_tokens == 5


def test_client_disconnecting_mid_stream_is_recorded_as_cancelled(rig: Rig) -> None:
    before = rig.upstream.stats()["total"]
    with rig.client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        extra_headers=told(completion_tokens=200, latency_ms=2000, ttft_ms=20),
    ) as stream:
        next(iter(stream))
    (call,) = rig.calls(1)
    assert call.status == "cancelled" and call.tokens_estimated
    assert call.latency_ms < 1500, "the gateway kept reading the upstream after the client left"
    assert rig.upstream.stats()["total"] == before + 1


def test_embeddings_and_models(rig: Rig) -> None:
    rig.client.embeddings.create(model="text-embedding-3-small", input="some text to embed")
    models = {m.id for m in rig.client.models.list()}
    assert models == {"gpt-4o-mini", "gpt-4o", "text-embedding-3-small"}
    (call,) = rig.calls()
    assert call.operation == "embeddings" and call.input_tokens > 0


@pytest.mark.parametrize(
    ("injected", "exception", "status", "error_type"),
    [
        ("rate_limit", openai.RateLimitError, 429, "rate_limit"),
        ("server_error", openai.InternalServerError, 500, "provider_down"),
        ("context_length", openai.BadRequestError, 400, "context_window_exceeded"),
    ],
)
def test_upstream_errors_reach_the_client_with_their_status(
    rig: Rig, injected: str, exception: type[Exception], status: int, error_type: str
) -> None:
    with pytest.raises(exception) as raised:
        rig.client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=told(error=injected)
        )
    assert getattr(raised.value, "status_code", None) == status
    (call,) = rig.calls()
    assert (call.status, call.error_type, call.http_status) == ("error", error_type, status)


def test_upstream_timeout_is_a_504(rig: Rig) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        rig.client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers=told(error="timeout")
        )
    assert raised.value.status_code == 504
    assert "did not answer" in str(raised.value)
    assert rig.calls()[0].error_type == "timeout"


async def test_refused_connection_is_a_502() -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory])
    gateway = Gateway(
        recorder=recorder,
        upstreams=Upstreams([Upstream(name="gone", base_url="http://127.0.0.1:9/v1")]),
    )
    await gateway.start()
    try:
        transport = httpx.ASGITransport(app=Starlette(routes=gateway.routes))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.post(
                "/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES}
            )
    finally:
        await gateway.stop()
    assert answer.status_code == 502
    assert "cannot be reached" in answer.json()["error"]["message"]
    recorder.flush()
    assert memory.calls[0].error_type == "provider_down"
    recorder.close()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"messages": []}', 400, "model"),
        (b'{"model": "gpt-4o"}', 400, "messages"),
        (
            b'{"model": "llama-9000", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "no configured upstream",
        ),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_nothing_is_recorded(
    rig: Rig, body: bytes, status: int, message: str
) -> None:
    answer = httpx.post(
        f"{rig.origin}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
    assert rig.calls() == []


def test_oversized_body_is_a_413(rig: Rig) -> None:
    huge = (
        b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        + b"x" * (11 * 1024 * 1024)
        + b'"}]}'
    )
    answer = httpx.post(
        f"{rig.origin}/v1/chat/completions",
        content=huge,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 413


def test_client_key_passes_through_and_is_never_recorded(rig: Rig) -> None:
    rig.client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=told(latency_ms=1)
    )
    (call,) = rig.calls()
    assert "sk-client-key" not in repr(call)


def _gateway_app(upstream: MockServer, recorder: Recorder, **options: Any) -> Starlette:
    upstreams = Upstreams([Upstream(name="mock", base_url=upstream.base_url, timeout_s=2.0)])

    gateway = Gateway(recorder=recorder, upstreams=upstreams, **options)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.stop()

    return Starlette(routes=gateway.routes, lifespan=lifespan)


SECRET = "sk-gw-search-team-0001"


def test_gateway_keys_bind_attribution_and_refuse_strangers(upstream: MockServer) -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory])
    keys = KeyRing([GatewayKey(name="search", secret=SECRET, team="search")])
    with serve_in_thread(_gateway_app(upstream, recorder, keys=keys)) as origin:
        wrong = openai.OpenAI(
            base_url=f"{origin}/v1", api_key="sk-not-a-gateway-key", max_retries=0
        )
        with pytest.raises(openai.AuthenticationError) as raised:
            wrong.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert raised.value.status_code == 401 and "gateway key" in str(raised.value)
        right = openai.OpenAI(base_url=f"{origin}/v1", api_key=SECRET, max_retries=0)
        right.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={**told(latency_ms=1), "X-Aivitals-Team": "spoofed"},
        )
        wrong.close()
        right.close()
    recorder.flush()
    (call,) = memory.calls  # the refused request reached no model and is not a call
    assert call.team == "search"
    recorder.close()


def test_rate_limit_per_key_answers_429_with_retry_after(upstream: MockServer) -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory])
    keys = KeyRing([GatewayKey(name="search", secret=SECRET, team="search", requests_per_minute=2)])
    before = upstream.stats()["total"]
    with serve_in_thread(_gateway_app(upstream, recorder, keys=keys)) as origin:
        client = openai.OpenAI(base_url=f"{origin}/v1", api_key=SECRET, max_retries=0)
        for _ in range(2):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers=told(latency_ms=1)
            )
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.close()
    response = raised.value.response
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert "2 requests per minute" in str(raised.value)
    assert upstream.stats()["total"] == before + 2, "a refused request must not reach the upstream"
    recorder.close()
