"""The real GenAI instrumentations, driving the real ``openai`` client against ``aivitals
mock-llm``, each in its own process (tests/support/otlp_driver.py): what they send becomes the
calls an independent price calculation (genai-prices itself) says.

Two ways in: the finished spans encoded by the SDK's own OTLP encoder and mapped in process
(fast), and the real ``OTLPSpanExporter`` (http/protobuf) pointed at a real ``aivitals serve``
with the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``, read back from its store.

What each instrumentation leaves out is written down in `SENDS`, and docs/otel.md says it too:
opentelemetry-instrumentation-openai-v2 sends no cached or reasoning tokens (its cached calls are
priced as uncached input: the span gives no way to know better) and no user; OpenLIT sends no
reasoning tokens; only OpenLLMetry, OpenInference and OpenLIT time the first token of an OpenAI
stream. OpenLLMetry's and OpenInference's Anthropic instrumentations report the cache inside
the input, as the conventions ask, so the Messages API's cache-outside input is counted once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aivitals.mock_llm import MockConfig, MockServer
from aivitals.otlp.mapping import calls_from_traces
from aivitals.recorder import Recorder

from .support.gateway_processes import ServeProcess
from .support.realservers import poll

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).parent / "support" / "otlp_driver.py"
OPENLIT = "openlit==1.45.0"
"""Installed with --no-deps (a full install backtracks for many minutes), beside the venv."""


@dataclass(frozen=True)
class Sends:
    """What an instrumentation's spans carry, beyond model, tokens and status."""

    cache: bool = True
    reasoning: bool = True
    ttft: bool = True
    user: bool = True
    stream_output_extra: int = 0
    """Output tokens a stream's span reports beyond the call's (see OpenLLMetry's Anthropic)."""


SENDS = {
    "traceloop": Sends(),
    "openai-v2": Sends(cache=False, reasoning=False, ttft=False, user=False),
    "openinference": Sends(),
    "openlit": Sends(reasoning=False),
    # Both add Anthropic's cache reads and writes to its input_tokens (the conventions' total);
    # neither times the first token or reads the request's metadata.user_id. OpenLLMetry's
    # stream span adds message_start's output count (1) to message_delta's, which is already
    # the whole: one token too many, as sent.
    "traceloop-anthropic": Sends(ttft=False, user=False, stream_output_extra=1),
    "openinference-anthropic": Sends(ttft=False, user=False),
}


@dataclass(frozen=True)
class Expected:
    model: str
    operation: str
    input_tokens: int
    output_tokens: int
    cached: int = 0
    cache_written: int = 0
    reasoning: int = 0
    error_type: str | None = None
    streamed: bool = False
    provider: str = "openai"

    def output(self, sends: Sends) -> int:
        return self.output_tokens + (sends.stream_output_extra if self.streamed else 0)

    def cost(self, sends: Sends) -> Decimal:
        """What genai-prices charges for the tokens the instrumentation reports."""
        price = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=self.input_tokens,
                cache_read_tokens=self.cached if sends.cache else 0,
                cache_write_tokens=self.cache_written if sends.cache else 0,
                output_tokens=self.output(sends),
            ),
            model_ref=self.model,
            provider_id=self.provider,
        )
        return price.total_price


# The driver's cases, as tests/support/otlp_driver.py asks the mock for them.
OPENAI_CASES = {
    "plain": Expected("gpt-4o-mini", "chat", 120, 40),
    "cached": Expected("gpt-4o-mini", "chat", 2048, 30, cached=1536),
    "reasoning": Expected("o3-mini", "chat", 100, 300, reasoning=256),
    "streamed": Expected("gpt-4o-mini", "chat", 80, 20, streamed=True),
    "error": Expected("gpt-4o-mini", "chat", 0, 0, error_type="rate_limit"),
    "embeddings": Expected("text-embedding-3-small", "embeddings", 8, 0),
}


def claude(input_tokens: int, output_tokens: int, **more: Any) -> Expected:
    return Expected(
        "claude-sonnet-4-5", "chat", input_tokens, output_tokens, provider="anthropic", **more
    )


ANTHROPIC_CASES = {
    # 3,000 tokens of prompt: Anthropic's usage says input_tokens 500, 1,000 read, 1,500 written.
    "cached": claude(3000, 30, cached=1000, cache_written=1500),
    "streamed": claude(3000, 30, cached=1000, cache_written=1500, streamed=True),
    "error": claude(0, 0, error_type="rate_limit"),
}
MOCK_TTFT_MS = 40  # the streamed case's X-Mock-TTFT-Ms


def cases_of(kind: str) -> dict[str, Expected]:
    return ANTHROPIC_CASES if kind.endswith("-anthropic") else OPENAI_CASES


VARIANTS = [
    pytest.param(("traceloop", {}), id="traceloop"),
    pytest.param(("openai-v2", {}), id="openai-v2"),
    pytest.param(
        ("openai-v2", {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"}),
        id="openai-v2-latest",
    ),
    pytest.param(("openinference", {}), id="openinference"),
    pytest.param(("openlit", {}), id="openlit"),
    pytest.param(("traceloop-anthropic", {}), id="traceloop-anthropic"),
    pytest.param(("openinference-anthropic", {}), id="openinference-anthropic"),
]


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    config = MockConfig(seed=1, latency_median_ms=20, latency_sigma=0, ttft_median_ms=10)
    with MockServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def openlit_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PYTHONPATH entry holding OpenLIT when the venv has none: pip, --no-deps, from the
    registry (its own dependencies that matter here are already in the venv)."""
    if importlib.util.find_spec("openlit") is not None:
        return ""
    target = tmp_path_factory.mktemp("openlit")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            OPENLIT,
        ],
        check=True,
        timeout=300,
    )
    return str(target)


def drive(
    kind: str, mock: MockServer, env: dict[str, str], openlit_path: str, *args: str
) -> dict[str, str]:
    """Run the driver; returns each case's parent span id."""
    environ = {**os.environ, **env}
    if kind == "openlit" and openlit_path:
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [openlit_path, environ.get("PYTHONPATH")])
        )
    done = subprocess.run(
        [sys.executable, str(DRIVER), kind, mock.base_url, *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parents: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(parents) == sorted(cases_of(kind))
    return parents


def check(kind: str, case: str, found: dict[str, Any]) -> None:
    """One recorded call (as the read API gives it, or a Call's fields) against its case."""
    expected = cases_of(kind)[case]
    sends = SENDS[kind]
    tokens = (
        found["input_tokens"],
        found["output_tokens"],
        found["cached_input_tokens"],
        found["cache_write_tokens"],
        found["reasoning_tokens"],
    )
    assert (found["provider"], found["model"], found["operation"]) == (
        expected.provider,
        expected.model,
        expected.operation,
    ), case
    assert tokens == (
        expected.input_tokens,
        expected.output(sends),
        expected.cached if sends.cache else 0,
        expected.cache_written if sends.cache else 0,
        expected.reasoning if sends.reasoning else 0,
    ), case
    if expected.error_type:
        assert (found["status"], found["error_type"], found["http_status"]) == (
            "error",
            expected.error_type,
            429,
        )
    else:
        assert (found["status"], found["error_type"]) == ("ok", None), case
    assert Decimal(str(found["cost_usd"])) == expected.cost(sends), case
    assert found["price_source"], case
    if expected.streamed and sends.ttft:
        assert 0 < found["ttft_ms"] <= found["latency_ms"]
        if kind != "openlit":  # OpenLIT times from the response head, not from the request
            assert found["ttft_ms"] >= MOCK_TTFT_MS
    else:
        assert found["ttft_ms"] is None, case
    assert found["environment"] == "test"
    if case in {"plain", "cached", "reasoning"}:
        assert found["user"] == ("u-driver" if sends.user else None), case


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve")) as process:
        yield process


@dataclass(frozen=True)
class Run:
    """One driver run: its spans both encoded to a file and exported to ``serve``."""

    kind: str
    parents: dict[str, str]
    encoded: Path


@pytest.fixture(scope="module", params=VARIANTS)
def run(
    request: pytest.FixtureRequest,
    mock: MockServer,
    serve: ServeProcess,
    openlit_path: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    kind, env = request.param
    out = tmp_path_factory.mktemp("spans") / "spans.pb"
    point = {
        **env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": serve.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    parents = drive(kind, mock, point, openlit_path, "--out", str(out), "--otlp")
    return Run(kind, parents, out)


def test_instrumentation_spans_encoded_by_the_sdk_become_priced_calls(run: Run) -> None:
    request = ExportTraceServiceRequest.FromString(run.encoded.read_bytes())
    recorder = Recorder()
    try:
        batch = calls_from_traces(request, price=recorder.price_draft)
    finally:
        recorder.close()
    assert (batch.rejected, batch.reasons) == (0, [])
    expected = cases_of(run.kind)
    assert batch.not_model >= len(expected)  # the driver's case spans at least
    by_parent = {call.parent_span_id: call for call in batch.calls}
    assert len(by_parent) == len(batch.calls) == len(expected)
    for case, parent in run.parents.items():
        call = by_parent[parent]
        check(run.kind, case, {name: getattr(call, name) for name in call.__struct_fields__})


def stored(serve: ServeProcess, parents: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    def attempt() -> dict[str, list[dict[str, Any]]] | None:
        reply = serve.client.get(
            serve.url + "/api/v1/calls", params={"limit": 1000, "since": "30d"}
        )
        reply.raise_for_status()
        calls = [item["call"] for item in reply.json()["calls"]]
        found = {
            case: [call for call in calls if call["parent_span_id"] == parent]
            for case, parent in parents.items()
        }
        return found if all(found.values()) else None

    result: dict[str, list[dict[str, Any]]] = poll("the driver's calls in the store", attempt)
    return result


def test_instrumentation_exports_to_aivitals_serve_and_each_call_is_stored_once(
    run: Run, serve: ServeProcess
) -> None:
    for case, calls in stored(serve, run.parents).items():
        assert len(calls) == 1, (case, calls)
        check(run.kind, case, calls[0])
