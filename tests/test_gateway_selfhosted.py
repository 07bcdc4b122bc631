"""Self-hosted upstreams through the gateway (issue 16): the quantisation serving each call, from
the upstream's config, the request's header or the model's name; and cost by the GPU-hour, each
call charged its share of the upstream's busy time (processor sharing)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from aivitals.attribution import Attribution
from aivitals.config import ConfigError
from aivitals.gateway.config import parse_gateway_config
from aivitals.gateway.gpu_time import BusyMeter
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call
from aivitals.recorder import Recorder
from aivitals.sdk.runtime import Runtime
from aivitals.server import create_app
from aivitals.sinks.memory import MemorySink

from .support.servers import serve_in_thread

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
RATE = Decimal("3.60")  # a dollar a thousand seconds: a second of GPU is $0.001


def shares(intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Each interval's processor-sharing share, by sweeping the elementary segments between
    every start and end: a segment's length is split evenly among the intervals covering it."""
    cuts = sorted({t for interval in intervals.values() for t in interval})
    got = dict.fromkeys(intervals, 0.0)
    for left, right in itertools.pairwise(cuts):
        covering = [k for k, (a, b) in intervals.items() if a <= left and right <= b]
        for name in covering:
            got[name] += (right - left) / len(covering)
    return got


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of the intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 300)), min_size=1, max_size=12).map(
        lambda pairs: [(float(a), float(a + d)) for a, d in pairs]
    )
)
def test_shares_add_up_to_the_busy_time_and_each_is_its_processor_share(
    intervals: list[tuple[float, float]],
) -> None:
    now = [0.0]
    meter = BusyMeter(clock=lambda: now[0])
    # At one instant: ends, then each empty interval (its start, then its end), then starts; so
    # intervals that only touch do not overlap.
    events = sorted(
        [(b, 0, i) for i, (a, b) in enumerate(intervals) if a < b]
        + [(a, rank, i) for i, (a, b) in enumerate(intervals) if a == b for rank in (1, 2)]
        + [(a, 3, i) for i, (a, b) in enumerate(intervals) if a < b]
    )
    started: dict[int, float] = {}
    got: dict[int, float] = {}
    for at, rank, index in events:
        now[0] = at
        if rank in (1, 3):
            started[index] = meter.start()
        else:
            got[index] = meter.end(started[index])
    assert sum(got.values()) == pytest.approx(busy_time(intervals), abs=1e-6)
    want = shares({str(i): interval for i, interval in enumerate(intervals)})
    for index, share in got.items():
        assert share == pytest.approx(want[str(index)], abs=1e-6)


class Clock:
    """The gateway's busy-time clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now


@pytest.fixture(scope="module")
def slow_upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(latency_sigma=0.0)) as mock:
        yield mock


@pytest.fixture(scope="module")
def quick_upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(time_scale=0)) as mock:
        yield mock


def serve(upstreams: list[Upstream], **options: Any) -> Any:
    sink = MemorySink()
    recorder = Recorder(batch_sinks=[sink], flush_interval_s=0.01)
    gateway = Gateway(recorder=recorder, upstreams=Upstreams(upstreams), **options)
    runtime = Runtime(recorder=recorder, prometheus=None, windows=None, defaults=Attribution())
    app = create_app(runtime=runtime, store=None, registry=CollectorRegistry(), gateway=gateway)
    return serve_in_thread(app), sink, recorder


def wait_for(recorder: Recorder, sink: MemorySink, count: int) -> list[Call]:
    """The recorded calls, once ``count`` of them are in (a closed stream is recorded just
    after the gateway sees its client go)."""
    deadline = time.monotonic() + 10
    while len(sink.calls) < count and time.monotonic() < deadline:
        assert recorder.flush(timeout_s=10)
        time.sleep(0.01)
    assert len(sink.calls) == count
    return list(sink.calls)


@pytest.mark.slow
def test_concurrent_calls_share_the_gpu_hour_by_busy_time(slow_upstream: MockServer) -> None:
    clock = Clock()
    local = Upstream(name="local", base_url=slow_upstream.base_url, gpu_hour_usd=RATE)
    server, sink, recorder = serve([local], gpu_clock=clock)
    # When each call starts and ends on the gateway's clock; D comes after an idle gap.
    schedule = {"A": (0.0, 30.0), "B": (10.0, 60.0), "C": (40.0, 100.0), "D": (120.0, 130.0)}
    moments = sorted(
        [(start, "start", name) for name, (start, _) in schedule.items()]
        + [(end, "end", name) for name, (_, end) in schedule.items()]
    )
    with (
        server as origin,
        openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-local", max_retries=0) as client,
    ):
        streams: dict[str, Any] = {}
        ended = 0
        for at, what, name in moments:
            clock.now = at
            if what == "start":
                # A stream that would last a minute: the call is in flight until it is closed.
                stream = client.chat.completions.create(
                    model=f"llama-{name}",
                    messages=MESSAGES,
                    stream=True,
                    extra_headers={"X-Mock-Latency-Ms": "60000", "X-Mock-TTFT-Ms": "0"},
                )
                next(iter(stream))  # the upstream is answering: the call has started
                streams[name] = stream
            else:
                streams.pop(name).close()
                ended += 1
                wait_for(
                    recorder, sink, ended
                )  # recorded (and its busy time ended) before time moves
    recorder.close()
    calls = {call.model[len("llama-") :]: call for call in sink.calls}
    want = shares(schedule)
    assert want == {"A": 20.0, "B": 30.0, "C": 50.0, "D": 10.0}
    for name, call in calls.items():
        assert call.status == "cancelled"
        assert call.price_source == "gpu-hour: local $3.60/h"
        assert call.cost_usd == Decimal(str(want[name])) * RATE / 3600
    # The shares add up to the time the upstream was busy: 100 s, then 10 s; the idle 20 s
    # between are nobody's.
    total = sum(call.cost_usd or 0 for call in calls.values())
    assert total == Decimal(str(busy_time(list(schedule.values())))) * RATE / 3600
    assert total == Decimal("0.110")


@pytest.mark.slow
def test_quantization_comes_from_the_header_the_config_or_the_model_name(
    quick_upstream: MockServer,
) -> None:
    server, sink, recorder = serve(
        [
            Upstream(
                name="vllm",
                base_url=quick_upstream.base_url,
                models=("qwen-coder",),
                quantization="FP8",
            ),
            Upstream(name="ollama", base_url=quick_upstream.base_url),
        ]
    )
    with (
        server as origin,
        openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-local", max_retries=0) as client,
    ):

        def ask(model: str, **headers: str) -> None:
            client.chat.completions.create(model=model, messages=MESSAGES, extra_headers=headers)

        ask("qwen-coder")  # the upstream's config
        ask("qwen2.5:3b-instruct-q4_K_M")  # the model's name (an Ollama tag)
        ask("Qwen2.5-7B-Instruct-AWQ")
        ask("gpt-4o-mini")  # names none
        ask("qwen-coder", **{"X-Aivitals-Quantization": "Q8_0"})  # the request says
        refused = httpx.post(
            f"{origin}/v1/chat/completions",
            json={"model": "qwen-coder", "messages": MESSAGES},
            headers={"X-Aivitals-Quantization": "eight bits"},
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "X-Aivitals-Quantization"
        calls = wait_for(recorder, sink, 5)
    recorder.close()
    assert [call.quantization for call in calls] == ["fp8", "q4_k_m", "awq", None, "q8_0"]
    assert quick_upstream.stats()["total"] == 5  # the refused request never went upstream
    # Never forwarded: the header is the gateway's.
    assert all(
        "x-aivitals-quantization" not in dict(r["headers"]) for r in quick_upstream.requests()
    )


def test_the_config_file_checks_quantization_and_gpu_hour_usd() -> None:
    config = parse_gateway_config(
        {
            "upstreams": [
                {
                    "name": "local",
                    "base_url": "http://127.0.0.1:8000/v1",
                    "quantization": "Q4_K_M",
                    "gpu_hour_usd": 2.5,
                },
                {"name": "claude", "base_url": "https://api.anthropic.com/v1", "api": "anthropic"},
            ]
        }
    )
    local, claude = config.build_upstreams().all
    assert (local.quantization, local.gpu_hour_usd) == ("q4_k_m", Decimal("2.5"))
    assert (claude.api, claude.provider, local.provider) == ("anthropic", "anthropic", "openai")
    with pytest.raises(ConfigError, match="quantization"):
        parse_gateway_config(
            {"upstreams": [{"name": "x", "base_url": "http://h/v1", "quantization": "4 bit"}]}
        )
    with pytest.raises(ConfigError, match="gpu_hour_usd"):
        parse_gateway_config(
            {"upstreams": [{"name": "x", "base_url": "http://h/v1", "gpu_hour_usd": 0}]}
        )
    with pytest.raises(ConfigError, match="api"):
        parse_gateway_config({"upstreams": [{"name": "x", "base_url": "http://h", "api": "grpc"}]})
