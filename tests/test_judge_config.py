"""The judge's configuration (`JudgeConfig`, the serve file's ``[judge]``), its rubric and
verdict reading, its sampling and its daily budget, as plain functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.config import ConfigError
from aivitals.content import CallContent, ContentMessage, ToolCallContent
from aivitals.gateway.config import parse_gateway_config
from aivitals.model import Call, new_id
from aivitals.quality.judge import LlmJudge, sampled
from aivitals.quality.judge_budget import DailySpend
from aivitals.quality.judge_config import JudgeConfig, JudgeCriterion, SampleRule
from aivitals.quality.judge_prompt import (
    MAX_CONTEXT_CHARS,
    RUBRIC_MARKER,
    MalformedVerdict,
    case_from,
    judge_messages,
    read_verdict,
)
from aivitals.recorder import Recorder

URL = "http://127.0.0.1:8900/v1"


def config(**overrides: Any) -> JudgeConfig:
    return JudgeConfig(**{"base_url": URL, "model": "gpt-4o-mini", **overrides})


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"base_url": "127.0.0.1:8900"}, "judge.base_url: must be an http:// or https:// URL"),
        ({"model": ""}, "judge.model: must be a non-empty name"),
        ({"sample_rate": 1.5}, "judge.sample_rate: must be a probability in [0, 1], got 1.5"),
        ({"sample_rate": True}, "judge.sample_rate"),
        ({"max_daily_usd": 0}, "judge.max_daily_usd: must be a number of dollars above 0"),
        ({"max_daily_usd": float("nan")}, "judge.max_daily_usd"),
        ({"max_concurrency": 0}, "judge.max_concurrency: must be a whole number >= 1"),
        ({"queue_size": 2.5}, "judge.queue_size"),
        ({"timeout_s": 0}, "judge.timeout_s: must be above 0"),
        ({"timezone": "Mars/Olympus"}, "judge.timezone: unknown time zone"),
        ({"relevance": False, "hallucination": False}, "no criterion left to judge"),
        ({"rules": SampleRule(rate=1.0)}, "judge.rules: must be a list of SampleRule"),
        ({"headers": {"X-A": 1}}, "judge.headers"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(overrides: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as error:
        config(**overrides)
    assert says in str(error.value)


def test_criteria_are_checked() -> None:
    with pytest.raises(ConfigError, match="name must be lower-case"):
        JudgeCriterion(name="Tone!", description="x")
    with pytest.raises(ConfigError, match="'relevance' is built in"):
        JudgeCriterion(name="relevance", description="x")
    with pytest.raises(ConfigError, match="needs a description"):
        JudgeCriterion(name="tone", description=" ")
    tone = JudgeCriterion(name="tone", description="Friendly? 1: very.")
    with pytest.raises(ConfigError, match="each name must be unique"):
        config(criteria=(tone, tone))
    assert config(criteria=[tone], hallucination=False).criterion_names == ("relevance", "tone")


def test_rules_match_on_every_list_given_and_the_first_match_wins() -> None:
    judged = config(
        sample_rate=0.01,
        rules=[
            SampleRule(features=["search"], models=["gpt-4o"], rate=1.0),
            SampleRule(features=["search"], rate=0.5),
        ],
    )
    assert judged.rate_for(model="gpt-4o", feature="search", prompt_version=None) == 1.0
    assert judged.rate_for(model="o3", feature="search", prompt_version=None) == 0.5
    assert judged.rate_for(model="gpt-4o", feature=None, prompt_version=None) == 0.01
    with pytest.raises(ConfigError, match=r"judge\.rules\.features: must be a list"):
        SampleRule(features="search", rate=1.0)  # a str is a Sequence[str]: refused at run time


def test_the_key_is_never_in_the_repr() -> None:
    assert "sk-secret" not in repr(config(api_key="sk-secret"))


@given(st.floats(min_value=0.0, max_value=1.0))
def test_sampling_is_monotone_in_the_rate(rate: float) -> None:
    call_id = new_id()
    # A call in a sample of some rate is in every sample of a higher one.
    if sampled(call_id, rate):
        assert sampled(call_id, min(1.0, rate + 0.1))
    assert sampled(call_id, rate) == sampled(call_id, rate)


def test_the_budget_day_is_the_configured_zones() -> None:
    now = [datetime(2026, 6, 1, 21, 30, tzinfo=UTC)]  # 23:30 in Paris (summer time)
    paris = DailySpend(Decimal("1"), timezone="Europe/Paris", clock=lambda: now[0])
    utc = DailySpend(Decimal("1"), timezone="UTC", clock=lambda: now[0])
    for spend in (paris, utc):
        spend.add(Decimal("1"))
        assert spend.exhausted
    now[0] += timedelta(hours=1)  # 00:30 in Paris, 22:30 in UTC
    assert not paris.exhausted and paris.spent_usd == 0
    assert utc.exhausted and utc.spent_usd == 1


def test_no_cap_always_allows() -> None:
    spend = DailySpend(None)
    spend.add(Decimal("1000"))
    assert spend.allows() and not spend.exhausted


def content(*messages: tuple[str, str], answer: str | None = "An answer.") -> CallContent:
    return CallContent(
        messages=tuple(ContentMessage(role=r, text=t) for r, t in messages), output_text=answer
    )


def test_the_case_takes_the_last_question_and_what_came_before_as_context() -> None:
    case = case_from(
        content(
            ("system", "Be brief."),
            ("user", "Hi"),
            ("assistant", "Hello"),
            ("user", "Capital of France?"),
        ),
        ("relevance", "hallucination"),
    )
    assert case is not None
    assert case.question == "Capital of France?"
    assert case.context == ("system: Be brief.", "user: Hi", "assistant: Hello")


def test_tool_calls_are_part_of_the_answer() -> None:
    judged = CallContent(
        messages=(ContentMessage(role="user", text="Weather in Paris?"),),
        tool_calls=(ToolCallContent(name="weather", arguments='{"city": "Paris"}'),),
    )
    case = case_from(judged, ("relevance",))
    assert case is not None and case.answer == '[tool call weather({"city": "Paris"})]'


def test_a_long_context_keeps_its_newest_text() -> None:
    old, new = "o" * MAX_CONTEXT_CHARS, "n" * 100
    case = case_from(content(("system", old), ("assistant", new), ("user", "Q?")), ("relevance",))
    assert case is not None
    assert sum(map(len, case.context)) == MAX_CONTEXT_CHARS
    assert case.context[-1] == f"assistant: {new}"


def test_the_prompt_is_the_rubric_then_the_case_as_json() -> None:
    case = case_from(content(("system", "Ctx"), ("user", "Q?")), ("relevance", "tone"))
    assert case is not None
    system, user = judge_messages(case, {"tone": "Friendly? 1: very."})
    assert system["role"] == "system" and system["content"].startswith(RUBRIC_MARKER)
    document = json.loads(user["content"])
    assert [c["name"] for c in document["criteria"]] == ["relevance", "tone"]
    assert document["criteria"][1]["description"] == "Friendly? 1: very."
    assert (document["context"], document["question"], document["answer"]) == (
        ["system: Ctx"],
        "Q?",
        "An answer.",
    )


@pytest.mark.parametrize(
    "reply",
    [None, "", "Relevance: high", "[1, 2]", '"text"', "{", '{"other": {"score": 1}}'],
)
def test_an_unusable_reply_is_malformed(reply: str | None) -> None:
    with pytest.raises(MalformedVerdict):
        read_verdict(reply, ("relevance",))


def test_a_verdict_is_read_defensively() -> None:
    reply = (
        '```json\n{"relevance": {"score": 0.75, "reason": "  close  "}, "hallucination": 2,'
        ' "tone": {"score": true}, "style": 0}\n```'
    )
    verdict = read_verdict(reply, ("relevance", "hallucination", "tone", "style", "depth"))
    assert verdict.scores == {"relevance": (0.75, "close"), "style": (0.0, None)}
    assert verdict.missing == ("hallucination", "tone", "depth")


def test_the_serve_file_judge_section_builds_a_config() -> None:
    raw = {
        "timezone": "Europe/Paris",
        "judge": {
            "base_url": URL,
            "model": "gpt-4o-mini",
            "api_key_env": "OPENAI_API_KEY",
            "sample_rate": 0.05,
            "max_daily_usd": 5,
            "rules": [{"features": ["search"], "rate": 0.5}],
            "criteria": [{"name": "politeness", "description": "Courteous? 1: very."}],
            "max_attempts": 2,
        },
    }
    settings = parse_gateway_config(raw, origin="gw.toml")
    assert settings.judge is not None
    judge = settings.judge.build()
    assert (judge.sample_rate, judge.daily_cap_usd, judge.api_key_env) == (
        0.05,
        Decimal(5),
        "OPENAI_API_KEY",
    )
    assert judge.rules == (SampleRule(features=("search",), rate=0.5),)
    assert judge.criterion_names == ("relevance", "hallucination", "politeness")
    assert judge.retry.max_attempts == 2


@pytest.mark.parametrize(
    ("judge", "says"),
    [
        ({"model": "m"}, "judge.base_url: Field required"),
        ({"base_url": URL, "model": "m", "sample_rate": 2}, "judge.sample_rate"),
        ({"base_url": URL, "model": "m", "criteria": [{"name": "X", "description": "d"}]}, "name"),
        ({"base_url": URL, "model": "m", "timezone": "Nowhere/Land"}, "judge.timezone"),
        ({"base_url": URL, "model": "m", "api_key": "sk-x"}, "judge.api_key: Extra inputs"),
    ],
)
def test_a_judge_section_mistake_is_one_line(judge: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_gateway_config({"judge": judge}, origin="gw.toml")
    message = str(error.value)
    assert message.startswith("gw.toml: ") and says in message and "\n" not in message


def test_serve_refuses_a_judge_whose_key_variable_is_unset(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[[upstreams]]\nname = "mock"\nbase_url = "http://127.0.0.1:9/v1"\n'
        f'[judge]\nbase_url = "{URL}"\nmodel = "gpt-4o-mini"\n'
        'api_key_env = "AIVITALS_TEST_UNSET_JUDGE_KEY"\n'
    )
    result = CliRunner().invoke(app, ["serve", "--no-db", "--port", "0", "--config", str(path)])
    assert result.exit_code == 2
    assert "AIVITALS_TEST_UNSET_JUDGE_KEY is not set" in result.output


def sent_to_the_judge(*, redact: bool, answer: str) -> dict[str, Any]:
    """The case the judge sends, captured by an in-process transport (no endpoint needed)."""
    sent: list[dict[str, Any]] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(json.loads(request.content)["messages"][1]["content"]))
        verdict = json.dumps({"relevance": {"score": 1, "reason": "ok"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": verdict}}]})

    recorder = Recorder(flush_interval_s=0.05)
    judge = LlmJudge(
        config(sample_rate=1.0, redact=redact),
        recorder=recorder,
        transport=httpx.MockTransport(endpoint),
    )
    recorder.quality.register(judge, name="judge")
    try:
        call = Call(provider="openai", model="gpt-4o", latency_ms=1.0)
        recorder.record(call, content(("user", "Reach jane.doe@acme.io?"), answer=answer))
        assert recorder.flush(timeout_s=30)
    finally:
        recorder.close()
    assert len(sent) == 1
    return sent[0]


def test_personal_data_and_secrets_are_masked_before_the_judge_sees_them() -> None:
    answer = "Sure: card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789AB."
    case = sent_to_the_judge(redact=True, answer=answer)
    assert case["question"] == "Reach [email]?"
    assert case["answer"] == "Sure: card [card], key [secret]."
    kept = sent_to_the_judge(redact=False, answer=answer)
    assert (kept["question"], kept["answer"]) == ("Reach jane.doe@acme.io?", answer)
