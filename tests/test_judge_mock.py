"""`aivitals mock-llm` plays the LLM judge: the rubric gets a JSON verdict, steered by
``[mock-judge ...]`` directives in the judged text; any other prompt is answered as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from aivitals.content import CallContent, ContentMessage
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.mock_llm.judge import MALFORMED_REPLY
from aivitals.quality.judge_prompt import case_from, judge_messages

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    config = MockConfig(latency_median_ms=0, latency_sigma=0, ttft_median_ms=0, hang_s=30)
    with MockServer(config) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def judge_prompt(answer: str, criteria: tuple[str, ...] = ("relevance", "hallucination")) -> Any:
    content = CallContent(
        messages=(
            ContentMessage(role="system", text="Paris is the capital of France."),
            ContentMessage(role="user", text="What is the capital of France?"),
        ),
        output_text=answer,
    )
    case = case_from(content, criteria)
    assert case is not None
    return judge_messages(case, {"tone": "Is it friendly? 1: very."})


def verdict_of(client: openai.OpenAI, answer: str, **options: Any) -> str | None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=judge_prompt(answer, **options),
        response_format={"type": "json_object"},
        timeout=10,
    )
    return reply.choices[0].message.content


def test_a_judge_prompt_gets_a_json_verdict_for_exactly_the_criteria_asked(
    client: openai.OpenAI,
) -> None:
    verdict = json.loads(verdict_of(client, "Paris.", criteria=("relevance", "tone")) or "")
    assert verdict == {
        "relevance": {"score": 0.9, "reason": "mock-llm: relevance is 0.9"},
        "tone": {"score": 0.9, "reason": "mock-llm: tone is 0.9"},
    }


def test_directives_set_every_score_or_one_criterion(client: openai.OpenAI) -> None:
    verdict = json.loads(verdict_of(client, "Paris. [mock-judge score=0.3 hallucination=1]") or "")
    assert {name: entry["score"] for name, entry in verdict.items()} == {
        "relevance": 0.3,
        "hallucination": 1.0,
    }


def test_a_directive_can_make_a_score_that_is_not_a_number(client: openai.OpenAI) -> None:
    verdict = json.loads(verdict_of(client, "Paris. [mock-judge relevance=invalid]") or "")
    assert verdict["relevance"]["score"] == "high"


def test_a_malformed_directive_answers_prose(client: openai.OpenAI) -> None:
    assert verdict_of(client, "Paris. [mock-judge malformed]") == MALFORMED_REPLY


def test_an_error_directive_fails_the_request_as_x_mock_error_would(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.RateLimitError):
        verdict_of(client, "Paris. [mock-judge error=rate_limit]")
    with pytest.raises(openai.InternalServerError):
        verdict_of(client, "Paris. [mock-judge error=server_error]")


def test_a_latency_directive_makes_the_answer_slow(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=judge_prompt("Paris. [mock-judge latency_ms=20000]"),
            timeout=0.5,
        )


def test_headers_win_over_directives(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=judge_prompt("Paris. [mock-judge latency_ms=60000]"),
        extra_headers={"X-Mock-Latency-Ms": "0"},
        timeout=10,
    )
    assert json.loads(reply.choices[0].message.content or "")["relevance"]["score"] == 0.9


def test_a_bad_directive_is_refused_with_what_would_work(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        verdict_of(client, "Paris. [mock-judge score=7]")
    assert raised.value.code == "invalid_mock_header"
    assert "[mock-judge score=...] must be a number from 0 to 1, got '7'" in str(raised.value)
    with pytest.raises(openai.BadRequestError, match="must be one of rate_limit"):
        verdict_of(client, "Paris. [mock-judge error=meltdown]")


def test_a_prompt_that_is_not_the_rubric_gets_filler_whatever_it_says(
    client: openai.OpenAI,
) -> None:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You are a judge."},
            {"role": "user", "content": "[mock-judge malformed] [mock-judge error=rate_limit]"},
        ],
        extra_headers={"X-Mock-Completion-Tokens": "3"},
    )
    assert reply.choices[0].message.content == "Lorem ipsum dolor"
