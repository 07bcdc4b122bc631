"""Spans that carry their messages become the call's content: OpenTelemetry's current
``gen_ai.input.messages`` / ``gen_ai.output.messages`` JSON, the older indexed
``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*``, and OpenInference's ``llm.input_messages.N.*``
/ ``llm.output_messages.N.*``. Posted to a server's OTLP receiver, they are evaluated (the scores
land in its store) and, with capture on, captured redacted; spans without messages get neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from aivitals.otlp.content import content_of_span
from aivitals.otlp.ids import call_id_for_span
from aivitals.otlp.receive import OtlpReceiver
from aivitals.query import Queries
from aivitals.query.detail import CallDetail
from aivitals.runtime import Runtime, build_runtime
from aivitals.server import create_app
from aivitals.sinks.capture_config import CaptureConfig
from aivitals.store.schema import contents
from aivitals.store.sql import SqlStore

from .support.otlp_spans import CHAT, AttrValue, export, span

CARD_ANSWER = "Your card 4111 1111 1111 1111 is on file."
REFUSAL = "I'm sorry, but I can't help with that."

CURRENT: dict[str, AttrValue] = {
    **CHAT,
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
    "gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "Which card do I use?"}]}]
    ),
    "gen_ai.output.messages": json.dumps(
        [
            {
                "role": "assistant",
                "parts": [
                    {"type": "text", "content": CARD_ANSWER},
                    {"type": "tool_call", "name": "charge", "arguments": {"amount": 3}},
                ],
                "finish_reason": "stop",
            }
        ]
    ),
}
INDEXED: dict[str, AttrValue] = {
    **CHAT,
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": "Be brief.",
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": "Help me pick a lock.",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": REFUSAL,
    "gen_ai.response.finish_reasons": ["stop"],
}
OPENINFERENCE: dict[str, AttrValue] = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-4o-mini",
    "llm.provider": "openai",
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Weather?",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
    "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"city": "Paris"',
}


def test_each_convention_reads() -> None:
    current = content_of_span(span(CURRENT), "stop")
    assert current is not None
    assert [(m.role, m.text) for m in current.messages] == [
        ("system", "Be brief."),
        ("user", "Which card do I use?"),
    ]
    assert current.output_text == CARD_ANSWER
    assert [(t.name, json.loads(t.arguments)) for t in current.tool_calls] == [
        ("charge", {"amount": 3})
    ]
    indexed = content_of_span(span(INDEXED), "stop")
    assert indexed is not None
    assert [(m.role, m.text) for m in indexed.messages] == [
        ("system", "Be brief."),
        ("user", "Help me pick a lock."),
    ]
    assert indexed.output_text == REFUSAL and indexed.finish_reason == "stop"
    openinference = content_of_span(span(OPENINFERENCE, name="ChatCompletion"), "tool_calls")
    assert openinference is not None
    assert [(m.role, m.text) for m in openinference.messages] == [("user", "Weather?")]
    assert openinference.output_text is None
    assert [(t.name, t.arguments) for t in openinference.tool_calls] == [
        ("get_weather", '{"city": "Paris"')
    ]
    assert content_of_span(span({**CHAT, "gen_ai.usage.input_tokens": 3}), "stop") is None


@dataclass
class Served:
    client: TestClient
    runtime: Runtime
    store: SqlStore

    def evaluator_scores(self, call_id: str) -> dict[str, float]:
        assert self.runtime.recorder.flush(timeout_s=10)
        detail = Queries(self.store.engine).call(call_id)
        assert isinstance(detail, CallDetail)
        return {s.name: s.value for s in detail.scores if s.source == "evaluator"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    store = SqlStore.open(tmp_path / "calls.db")
    runtime = build_runtime(
        store=store,
        endpoint=False,
        registry=CollectorRegistry(),
        flush_interval_s=0.05,
        # The spans started in 2025: a retention of years keeps them past the first expiry.
        capture_content=CaptureConfig(enabled=True, retention_days=3650),
    )
    app = create_app(
        runtime=runtime, store=store, registry=CollectorRegistry(), otlp=OtlpReceiver()
    )
    yield Served(TestClient(app), runtime, store)
    runtime.recorder.close()
    store.close()


def test_received_spans_are_evaluated_and_captured(served: Served) -> None:
    spans = [
        span(CURRENT),
        span(INDEXED),
        span(OPENINFERENCE, name="ChatCompletion"),
        span({**CHAT, "gen_ai.usage.input_tokens": 3}),
    ]
    reply = served.client.post(
        "/v1/traces",
        content=export(*spans).SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert reply.status_code == 200, reply.text
    ids = [call_id_for_span(s.trace_id, s.span_id, s.start_time_unix_nano) for s in spans]
    card, refused, tool, bare = (served.evaluator_scores(i) for i in ids)
    assert card["pii_leak"] == 1.0 and card["refusal"] == 0.0
    assert refused["refusal"] == 1.0 and refused["pii_leak"] == 0.0
    assert tool["json_valid"] == 0.0 and tool["empty"] == 0.0  # cut arguments do not parse
    assert bare == {}  # no messages on the span: nothing to evaluate
    with served.store.engine.connect() as connection:
        stored = {row.call_id: row for row in connection.execute(sa.select(contents))}
    assert set(stored) == {ids[0], ids[1], ids[2]}
    assert stored[ids[0]].output_text == "Your card [card] is on file."
