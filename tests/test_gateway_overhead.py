"""The gateway's own time on each request: ``X-Aivitals-Overhead-Ms`` and its histogram.

A real ``aivitals serve`` in front of ``aivitals mock-llm``, which takes a known time to answer
(200 ms whole; a stream's chunks spread over 200 ms after a 50 ms first token), and the official
openai client. The header must leave that wait out: it is the gateway's time less the upstream's,
and ``aivitals_gateway_overhead_seconds`` must have counted exactly what the header said.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .support.gateway_processes import MockLlmProcess, ServeProcess

pytestmark = pytest.mark.slow

UPSTREAM_S = 0.2  # the mock's whole answer; a stream's last chunk
HEADER = "x-aivitals-overhead-ms"
METRIC = "aivitals_gateway_overhead_seconds"
CHAT = "/v1/chat/completions"
FORMAT = re.compile(r"^\d+\.\d{3}$")  # milliseconds, three decimals


@pytest.fixture(scope="module")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLlmProcess]:
    flags = ("--latency-median-ms", "200", "--ttft-median-ms", "50", "--latency-sigma", "0")
    with MockLlmProcess(tmp_path_factory.mktemp("mock"), *flags, "--seed", "3") as process:
        yield process


@pytest.fixture(scope="module")
def gateway(
    mock: MockLlmProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve"), "--upstream", mock.base_url) as process:
        yield process


@pytest.fixture
def client(gateway: ServeProcess) -> Iterator[openai.OpenAI]:
    made = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-client-key", max_retries=0)
    yield made
    made.close()


def histogram(gateway: ServeProcess, route: str, stream: str) -> tuple[float, float]:
    """(count, sum) of the overhead histogram's series for ``route`` and ``stream``."""
    text = gateway.client.get(gateway.url + "/metrics").text
    count = total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != METRIC:
            continue
        for sample in family.samples:
            if sample.labels.get("route") != route or sample.labels.get("stream") != stream:
                continue
            if sample.name == METRIC + "_count":
                count = sample.value
            elif sample.name == METRIC + "_sum":
                total = sample.value
    return count, total


def test_a_whole_answer_says_the_gateway_time_without_the_upstream_wait(
    gateway: ServeProcess, client: openai.OpenAI
) -> None:
    count_before, sum_before = histogram(gateway, CHAT, "false")
    began = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )
    elapsed_s = time.perf_counter() - began
    assert raw.parse().usage is not None
    said = raw.headers[HEADER]
    assert FORMAT.match(said), said
    overhead_ms = float(said)
    assert overhead_ms > 0
    assert elapsed_s >= UPSTREAM_S  # the mock did take its time
    # The mock's 200 ms are left out: what is left is under the rest of the round trip.
    assert overhead_ms < (elapsed_s - UPSTREAM_S) * 1000 + 1.0
    count_after, sum_after = histogram(gateway, CHAT, "false")
    assert count_after == count_before + 1
    # The histogram counted what the header said (the header rounds to the microsecond).
    assert abs((sum_after - sum_before) * 1000 - overhead_ms) <= 0.001


def test_a_stream_says_its_overhead_at_its_head_and_counts_its_chunks_at_its_end(
    gateway: ServeProcess, client: openai.OpenAI
) -> None:
    count_before, sum_before = histogram(gateway, CHAT, "true")
    began = time.perf_counter()
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
    ) as response:
        said = response.headers[HEADER]
        chunks = list(response.parse())
    elapsed_s = time.perf_counter() - began
    assert len(chunks) > 2
    assert FORMAT.match(said), said
    assert elapsed_s >= UPSTREAM_S
    # The histogram's sample comes when the stream has ended, on the server: wait for it.
    deadline = time.monotonic() + 10
    while histogram(gateway, CHAT, "true")[0] == count_before and time.monotonic() < deadline:
        time.sleep(0.05)
    count_after, sum_after = histogram(gateway, CHAT, "true")
    assert count_after == count_before + 1
    streamed_ms = (sum_after - sum_before) * 1000
    # The whole stream's overhead holds its head's, plus each chunk's handling...
    assert streamed_ms >= float(said) - 0.001
    # ...and none of the 200 ms the upstream took to send its chunks.
    assert streamed_ms < (elapsed_s - UPSTREAM_S) * 1000 + 1.0


def test_the_gateway_s_own_answers_carry_it_too(
    gateway: ServeProcess, client: openai.OpenAI
) -> None:
    count_before, _ = histogram(gateway, CHAT, "false")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert FORMAT.match(refused.value.response.headers[HEADER])
    assert histogram(gateway, CHAT, "false")[0] == count_before + 1
    models = client.models.with_raw_response.list()
    assert FORMAT.match(models.headers[HEADER])
    assert histogram(gateway, "/v1/models", "false")[0] >= 1
