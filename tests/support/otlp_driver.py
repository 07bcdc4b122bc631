"""Drive the real ``openai`` (or ``anthropic``) client under one real GenAI instrumentation, in
its own process.

    python tests/support/otlp_driver.py KIND MOCK_BASE_URL [--out FILE] [--otlp]

Instrumentations patch the ``openai`` module for the whole process, so each runs alone here.
KIND is ``traceloop`` (opentelemetry-instrumentation-openai), ``openai-v2``
(opentelemetry-instrumentation-openai-v2; ``OTEL_SEMCONV_STABILITY_OPT_IN`` is the caller's to
set), ``openinference`` (openinference-instrumentation-openai) or ``openlit`` (openlit, given a
local pricing file: it fetches one from the network otherwise); ``traceloop-anthropic`` and
``openinference-anthropic`` instrument the ``anthropic`` client instead, for `ANTHROPIC_CASES`.

Each case of `CASES` (or `ANTHROPIC_CASES`) runs under a parent span named ``case <name>``, so the caller can tell the
model spans apart by their parent. ``--out FILE`` writes the finished spans as one OTLP protobuf
export (the SDK's own encoder); ``--otlp`` exports them with the real ``OTLPSpanExporter``, which
finds aivitals through the standard ``OTEL_EXPORTER_OTLP_*`` variables; both may be given, for
the same spans. The last line on stdout is a JSON object mapping each case to its parent span id
(hex).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

KINDS = (
    "traceloop",
    "openai-v2",
    "openinference",
    "openlit",
    "traceloop-anthropic",
    "openinference-anthropic",
)
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]


@dataclass(frozen=True)
class Case:
    model: str
    headers: dict[str, str]
    stream: bool = False
    embeddings: bool = False


CASES = {
    "plain": Case("gpt-4o-mini", {"X-Mock-Prompt-Tokens": "120", "X-Mock-Completion-Tokens": "40"}),
    "cached": Case(
        "gpt-4o-mini",
        {
            "X-Mock-Prompt-Tokens": "2048",
            "X-Mock-Cached-Tokens": "1536",
            "X-Mock-Completion-Tokens": "30",
        },
    ),
    "reasoning": Case(
        "o3-mini",
        {
            "X-Mock-Prompt-Tokens": "100",
            "X-Mock-Completion-Tokens": "300",
            "X-Mock-Reasoning-Tokens": "256",
        },
    ),
    "streamed": Case(
        "gpt-4o-mini",
        {
            "X-Mock-Prompt-Tokens": "80",
            "X-Mock-Completion-Tokens": "20",
            "X-Mock-TTFT-Ms": "40",
            "X-Mock-Latency-Ms": "120",
        },
        stream=True,
    ),
    "error": Case("gpt-4o-mini", {"X-Mock-Error": "rate_limit"}),
    "embeddings": Case("text-embedding-3-small", {"X-Mock-Prompt-Tokens": "8"}, embeddings=True),
}
"""What each case asks of the mock (the caller computes what the store must then hold)."""

_ANTHROPIC_CACHE = {
    "X-Mock-Prompt-Tokens": "3000",  # Anthropic's input_tokens is then 500: the uncached part
    "X-Mock-Cached-Tokens": "1000",
    "X-Mock-Cache-Write-Tokens": "1500",
    "X-Mock-Completion-Tokens": "30",
}
ANTHROPIC_CASES = {
    "cached": Case("claude-sonnet-4-5", _ANTHROPIC_CACHE),
    "streamed": Case("claude-sonnet-4-5", _ANTHROPIC_CACHE, stream=True),
    "error": Case("claude-sonnet-4-5", {"X-Mock-Error": "rate_limit"}),
}
"""The Messages API's cases: its usage counts the cache outside ``input_tokens``."""


def instrument(kind: str, provider: TracerProvider, workdir: Path) -> None:
    if kind == "traceloop":
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor as Traceloop

        Traceloop().instrument(tracer_provider=provider)
    elif kind == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2

        V2().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]  # untyped __init__
    elif kind == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference

        OpenInference().instrument(tracer_provider=provider)
    elif kind == "traceloop-anthropic":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

        AnthropicInstrumentor().instrument(tracer_provider=provider)
    elif kind == "openinference-anthropic":
        from openinference.instrumentation.anthropic import (
            AnthropicInstrumentor as OpenInferenceAnthropic,
        )

        OpenInferenceAnthropic().instrument(tracer_provider=provider)
    elif kind == "openlit":
        # Imported by name: OpenLIT is installed (--no-deps) only beside the test run.
        openlit = importlib.import_module("openlit")
        # OpenLIT reuses the global provider; a local pricing file keeps it off the network
        # (it prices nothing then, and aivitals never reads its cost anyway).
        pricing = workdir / "openlit-pricing.json"
        pricing.write_text("{}")
        trace.set_tracer_provider(provider)
        openlit.init(
            application_name="driver",
            environment="test",
            pricing_json=str(pricing),
            disable_metrics=True,
            disable_events=True,
            capture_message_content=False,
        )
    else:
        raise SystemExit(f"unknown instrumentation {kind!r}; one of {', '.join(KINDS)}")


def run_cases(base_url: str, provider: TracerProvider) -> dict[str, str]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0)
    tracer = provider.get_tracer("aivitals.tests.driver")
    parents: dict[str, str] = {}
    for name, case in CASES.items():
        with tracer.start_as_current_span(f"case {name}") as parent:
            parents[name] = f"{parent.get_span_context().span_id:016x}"
            try:
                if case.embeddings:
                    client.embeddings.create(
                        model=case.model, input="hello", extra_headers=case.headers
                    )
                elif case.stream:
                    stream = client.chat.completions.create(
                        model=case.model,
                        messages=MESSAGES,
                        stream=True,
                        stream_options={"include_usage": True},
                        extra_headers=case.headers,
                    )
                    for _ in stream:
                        pass
                else:
                    client.chat.completions.create(
                        model=case.model,
                        messages=MESSAGES,
                        user="u-driver",
                        extra_headers=case.headers,
                    )
            except openai.RateLimitError:
                if name != "error":
                    raise
    return parents


def run_anthropic_cases(base_url: str, provider: TracerProvider) -> dict[str, str]:
    import anthropic

    client = anthropic.Anthropic(
        base_url=base_url.removesuffix("/v1"), api_key="sk-ant-test", max_retries=0
    )
    tracer = provider.get_tracer("aivitals.tests.driver")
    parents: dict[str, str] = {}
    for name, case in ANTHROPIC_CASES.items():
        with tracer.start_as_current_span(f"case {name}") as parent:
            parents[name] = f"{parent.get_span_context().span_id:016x}"
            try:
                if case.stream:
                    with client.messages.stream(
                        model=case.model,
                        max_tokens=100,
                        messages=[{"role": "user", "content": "Say hello."}],
                        extra_headers=case.headers,
                    ) as stream:
                        for _ in stream.text_stream:
                            pass
                else:
                    client.messages.create(
                        model=case.model,
                        max_tokens=100,
                        messages=[{"role": "user", "content": "Say hello."}],
                        metadata={"user_id": "u-driver"},
                        extra_headers=case.headers,
                    )
            except anthropic.RateLimitError:
                if name != "error":
                    raise
    return parents


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("base_url")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--otlp", action="store_true")
    args = parser.parse_args(argv)
    if not args.out and not args.otlp:
        parser.error("--out FILE, --otlp or both")

    resource = Resource.create(
        {"service.name": f"driver-{args.kind}", "deployment.environment.name": "test"}
    )
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    if args.otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if args.out:
        provider.add_span_processor(SimpleSpanProcessor(memory))
    with tempfile.TemporaryDirectory() as workdir:
        instrument(args.kind, provider, Path(workdir))
        if args.kind.endswith("-anthropic"):
            parents = run_anthropic_cases(args.base_url, provider)
        else:
            parents = run_cases(args.base_url, provider)
    if not provider.force_flush(30_000):
        print("the span processor did not flush", file=sys.stderr)
        return 1
    if args.out:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        args.out.write_bytes(encode_spans(memory.get_finished_spans()).SerializeToString())
    provider.shutdown()
    print(json.dumps(parents))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
