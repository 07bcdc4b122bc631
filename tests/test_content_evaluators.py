"""Each built-in evaluator (empty, truncated, refusal, json_valid, pii_leak) on the real `openai`
and `anthropic` clients' answers, through `aivitals.instrument`, against `aivitals mock-llm` told
what to answer: chat completions, Anthropic's Messages and the Responses API, whole and streamed
(the evaluators read the assembled text). Negatives included: a polite answer is no refusal, a
card-shaped number failing Luhn is no leak, JSON that parses but breaks the schema is invalid.
The expected scores are the table's (tests/support/content_cases.py), never the code's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pydantic
import pytest

import aivitals
from aivitals.mock_llm import MockConfig, MockServer

from .conftest import Recorded
from .support.content_cases import (
    Case,
    cases_for,
    chat_options,
    check,
    messages_options,
    responses_options,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=13, time_scale=0)) as server:
        yield server


def scores_of_last(recorded: Recorded) -> dict[str, float]:
    call = recorded.calls()[-1]
    return {
        s.name: s.value
        for s in recorded.scores()
        if s.call_id == call.id and s.source == "evaluator"
    }


def drain(reply: Any, stream: bool) -> None:
    if stream:
        for _ in reply:
            pass


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", cases_for("chat"), ids=lambda case: case.id)
def test_chat(upstream: MockServer, recorded: Recorded, case: Case, stream: bool) -> None:
    client = aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=stream,
        **chat_options(case),
    )
    drain(reply, stream)
    client.close()
    check(case, scores_of_last(recorded))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", cases_for("messages"), ids=lambda case: case.id)
def test_anthropic(upstream: MockServer, recorded: Recorded, case: Case, stream: bool) -> None:
    client = aivitals.instrument(
        anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    )
    reply = client.messages.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=stream,
        **messages_options(case),
    )
    drain(reply, stream)
    client.close()
    check(case, scores_of_last(recorded))


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", cases_for("responses"), ids=lambda case: case.id)
def test_responses(upstream: MockServer, recorded: Recorded, case: Case, stream: bool) -> None:
    client = aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )
    reply = client.responses.create(
        model="gpt-4o-mini",
        input="What is the capital of France?",
        stream=stream,
        **responses_options(case),
    )
    drain(reply, stream)
    client.close()
    check(case, scores_of_last(recorded))


def test_evaluators_off_make_no_scores(upstream: MockServer) -> None:
    from aivitals.sdk.runtime import reset
    from aivitals.sinks.memory import MemorySink

    memory = MemorySink()
    runtime = aivitals.configure(sinks=[memory], flush_interval_s=0.05, evaluators=False)
    try:
        client = aivitals.instrument(
            openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
        )
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"X-Mock-Answer": "card"},
        )
        client.close()
        assert runtime.recorder.flush(timeout_s=10)
        assert len(memory.calls) == 1 and memory.scores == []
    finally:
        reset()


class City(pydantic.BaseModel):
    city: str
    population: int


def test_parse_with_a_model_checks_its_schema(upstream: MockServer, recorded: Recorded) -> None:
    """``responses.parse(text_format=Model)`` and ``messages.parse(output_format=Model)``: the
    model's JSON Schema is the one the answer is held to. (An answer breaking it makes the
    client's parse raise, and the call is then recorded as failed: only ``create`` with the
    schema shows the evaluator's 0, in the table's cases.)"""
    gpt = aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )
    claude = aivitals.instrument(
        anthropic.Anthropic(base_url=upstream.url, api_key="sk-ant-test", max_retries=0)
    )
    headers = {"X-Mock-Answer": "json"}
    try:
        parsed = gpt.responses.parse(
            model="gpt-4o-mini", input="Paris?", text_format=City, extra_headers=headers
        )
        assert parsed.output_parsed == City(city="Paris", population=2102650)
        assert scores_of_last(recorded)["json_valid"] == 1.0
        message = claude.messages.parse(
            model="claude-haiku-4-5",
            max_tokens=1000,
            messages=[{"role": "user", "content": "Paris?"}],
            output_format=City,
            extra_headers=headers,
        )
        assert message.parsed_output == City(city="Paris", population=2102650)
        assert scores_of_last(recorded)["json_valid"] == 1.0
    finally:
        gpt.close()
        claude.close()
