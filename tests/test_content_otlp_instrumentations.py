"""Real GenAI instrumentations' spans carry the prompt and the answer, and the OTLP mapping reads
them as the call's content: OpenLLMetry (openai, anthropic) and openai-v2 in
``gen_ai.input.messages`` / ``gen_ai.output.messages``, OpenInference (openai, anthropic) in
``llm.input_messages.N`` / ``llm.output_messages.N`` (parts, for Anthropic). Each instrumentation
runs the real client against `aivitals mock-llm` in its own process (tests/support/otlp_driver.py);
the answer expected is the mock's filler for the tokens the driver asked of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aivitals.mock_llm import MockConfig, MockServer
from aivitals.mock_llm.shapes import filler_text
from aivitals.otlp.content import content_of_span

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).parent / "support" / "otlp_driver.py"
V2 = {
    "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
}
# The driver's cases and the completion tokens each asks of the mock (its answer's words).
OPENAI_CASES = {"plain": 40, "streamed": 20}
ANTHROPIC_CASES = {"cached": 30, "streamed": 30}
KINDS = {
    "traceloop": ({}, OPENAI_CASES),
    "openai-v2": (V2, OPENAI_CASES),
    "openinference": ({}, OPENAI_CASES),
    "traceloop-anthropic": ({}, ANTHROPIC_CASES),
    "openinference-anthropic": ({}, ANTHROPIC_CASES),
}


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=1, time_scale=0)) as server:
        yield server


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_instrumentation_messages_are_read(kind: str, mock: MockServer, tmp_path: Path) -> None:
    env, cases = KINDS[kind]
    out = tmp_path / "spans.pb"
    done = subprocess.run(
        [sys.executable, str(DRIVER), kind, mock.base_url, "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    parents: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    by_parent = {parents[case]: case for case in cases}
    request = ExportTraceServiceRequest.FromString(out.read_bytes())
    seen: dict[str, tuple[list[tuple[str, str]], str | None]] = {}
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                case = by_parent.get(span.parent_span_id.hex())
                if case is None:
                    continue
                content = content_of_span(span, None)
                assert content is not None, (kind, case, span.name)
                seen[case] = ([(m.role, m.text) for m in content.messages], content.output_text)
    assert seen == {
        case: ([("user", "Say hello.")], filler_text(words)) for case, words in cases.items()
    }
