"""The built-in evaluators, the registry of the application's own, and turning them off.

The contents here are built by hand: the converters from real `openai` and `anthropic` response
objects into `CallContent` are the SDK's (tests/test_content_*.py round-trip those through the
evaluators).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aivitals
from aivitals.config import ConfigError
from aivitals.content import CallContent, ToolCallContent
from aivitals.gateway.config import load_gateway_config
from aivitals.model import Call, Score
from aivitals.quality.evaluators import (
    BUILTIN,
    EvaluatorConsumer,
    register_evaluator,
    registered,
    unregister_evaluator,
)
from aivitals.quality.evaluators.basic import empty, truncated
from aivitals.quality.evaluators.json_valid import json_valid
from aivitals.quality.evaluators.pii_leak import pii_leak
from aivitals.quality.evaluators.refusal import refusal
from aivitals.quality.settings import QualitySettings
from aivitals.runtime import build_runtime
from aivitals.sinks.memory import MemorySink

from .support.helpers import make_call

CALL = make_call()
ANSWER = CallContent(output_text="Paris is the capital of France.", finish_reason="stop")
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["city", "population"],
    "additionalProperties": False,
}


def text(answer: str | None, **fields: Any) -> CallContent:
    return CallContent(output_text=answer, **fields)


@pytest.fixture
def own_evaluators() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        unregister_evaluator(name)


def test_empty_is_no_text_and_no_tool_call() -> None:
    assert empty(CALL, text(None)) == 1.0
    assert empty(CALL, text("")) == 1.0
    assert empty(CALL, text(" \n\t ")) == 1.0
    assert empty(CALL, ANSWER) == 0.0
    tool_only = CallContent(tool_calls=(ToolCallContent(name="search", arguments="{}"),))
    assert empty(CALL, tool_only) == 0.0


def test_truncated_is_a_length_finish_from_the_content_or_the_call() -> None:
    assert truncated(CALL, text("The capital of Fra", finish_reason="length")) == 1.0
    # Anthropic's max_tokens arrives as length (aivitals.finish).
    assert truncated(make_call(finish_reason="length"), text("The capital")) == 1.0
    assert truncated(CALL, ANSWER) == 0.0
    assert truncated(CALL, text("Paris.", finish_reason="tool_calls")) == 0.0


def test_refusal_from_the_providers_field_the_finish_reason_or_the_phrases() -> None:
    assert refusal(CALL, CallContent(refusal="I'm sorry, I cannot assist with that.")) == 1.0
    assert refusal(CALL, text("", finish_reason="refusal")) == 1.0
    assert refusal(make_call(finish_reason="refusal"), text(None)) == 1.0
    assert refusal(CALL, text("Lo siento, pero no puedo ayudarte con eso.")) == 1.0
    assert refusal(CALL, text("Ich kann diese Anfrage nicht erfüllen.")) == 1.0


def test_a_polite_answer_is_not_a_refusal() -> None:
    polite = text(
        "I'm sorry to hear your build is failing! I can't be sure without the log, but the "
        "usual cause is a stale lock file: delete it and run the install again."
    )
    assert refusal(CALL, polite) == 0.0
    assert refusal(CALL, text("I can't believe how easy this is: use sorted().")) == 0.0


def test_json_valid_runs_only_for_calls_that_asked_for_json_or_made_tool_calls() -> None:
    assert json_valid(CALL, text('{"a": 1}')) is None  # plain text was asked for
    assert json_valid(CALL, text('{"a": 1}', response_format="text")) is None
    assert json_valid(CALL, text('{"a": 1}', response_format="json_object")) == 1.0
    assert json_valid(CALL, text("Sure! {'a': 1}", response_format="json_object")) == 0.0
    assert json_valid(CALL, text('{"a": 1', response_format="json_object")) == 0.0


def test_json_that_parses_but_breaks_the_schema_is_invalid() -> None:
    fits = text('{"city": "Paris", "population": 2102650}', response_format="json_schema")
    wrong_type = text('{"city": "Paris", "population": "2.1M"}', response_format="json_schema")
    missing = text('{"city": "Paris"}', response_format="json_schema")
    assert json_valid(CALL, CallContent(**{**_fields(fits), "json_schema": SCHEMA})) == 1.0
    assert json_valid(CALL, CallContent(**{**_fields(wrong_type), "json_schema": SCHEMA})) == 0.0
    assert json_valid(CALL, CallContent(**{**_fields(missing), "json_schema": SCHEMA})) == 0.0


def test_openais_json_schema_wrapper_is_read_for_its_schema() -> None:
    wrapper = {"name": "city", "strict": True, "schema": SCHEMA}
    answer = '{"city": "Paris", "population": "many"}'
    content = text(answer, response_format="json_schema", json_schema=wrapper)
    assert json_valid(CALL, content) == 0.0


def test_tool_call_arguments_must_parse_and_fit_the_tools_parameters() -> None:
    tools = {"weather": {"type": "object", "required": ["city"]}}
    good = CallContent(
        tool_calls=(ToolCallContent(name="weather", arguments='{"city": "Oslo"}'),),
        tools_schema=tools,
    )
    cut = CallContent(tool_calls=(ToolCallContent(name="weather", arguments='{"city": "Os'),))
    off_schema = CallContent(
        tool_calls=(
            ToolCallContent(name="weather", arguments='{"city": "Oslo"}'),
            ToolCallContent(name="weather", arguments='{"town": "Oslo"}'),
        ),
        tools_schema=tools,
    )
    assert json_valid(CALL, good) == 1.0
    assert json_valid(CALL, cut) == 0.0
    assert json_valid(CALL, off_schema) == 0.0
    # A tool with no declared parameters only has to parse; no arguments at all is {}.
    undeclared = CallContent(tool_calls=(ToolCallContent(name="now", arguments=""),))
    assert json_valid(CALL, undeclared) == 1.0


def test_a_schema_that_cannot_compile_or_points_elsewhere_gives_no_false_invalid() -> None:
    broken = text('{"a": 1}', response_format="json_schema", json_schema={"type": "objekt"})
    remote = text(
        '{"a": 1}',
        response_format="json_schema",
        json_schema={"$ref": "https://schemas.invalid/a.json"},  # offline: never fetched
    )
    assert json_valid(CALL, broken) == 1.0
    assert json_valid(CALL, remote) == 1.0


def test_pii_leak_in_the_answer_or_the_tool_arguments() -> None:
    assert pii_leak(CALL, text("Reach her at marie.curie@sorbonne.fr.")) == 1.0
    assert pii_leak(CALL, text("Use card 4111 1111 1111 1111.")) == 1.0
    assert pii_leak(CALL, text("Your key is sk-proj-4fG7hK2mN9pQ1rS8tV3wX6yZ0aB5cD")) == 1.0
    args = ToolCallContent(name="send", arguments='{"to": "+44 20 7946 0958"}')
    assert pii_leak(CALL, CallContent(tool_calls=(args,))) == 1.0


def test_a_number_that_fails_luhn_and_a_date_are_no_leak() -> None:
    assert pii_leak(CALL, text("Card 4111 1111 1111 1112 was declined on 2024-03-15.")) == 0.0
    assert pii_leak(CALL, text("Version 10.0.19045, order 4815162342.")) == 0.0


@pytest.mark.parametrize("name", list(BUILTIN))
def test_no_builtin_scores_a_failed_call_or_an_embedding(name: str) -> None:
    failed = make_call(status="error", error_type="timeout")
    embedding = make_call(operation="embeddings")
    content = text(None, response_format="json_object", finish_reason="length")
    assert BUILTIN[name](failed, content) is None
    assert BUILTIN[name](embedding, content) is None


def recorded_scores(runtime_options: dict[str, Any], content: CallContent) -> list[Score]:
    memory = MemorySink()
    runtime = build_runtime(sinks=[memory], store=False, endpoint=False, **runtime_options)
    call = make_call(feature="support", model="gpt-4o")
    try:
        runtime.recorder.record(call, content)
        assert runtime.recorder.flush()
    finally:
        runtime.recorder.close()
    assert all(s.call_id == call.id for s in memory.scores)
    return memory.scores


def test_on_by_default_each_score_is_an_evaluator_score_of_the_calls_model_and_feature() -> None:
    content = text("Je ne peux pas vous aider.", finish_reason="length")
    scores = recorded_scores({}, content)
    assert {s.name: s.value for s in scores} == {
        "empty": 0.0,
        "truncated": 1.0,
        "refusal": 1.0,
        "pii_leak": 0.0,
    }  # no json_valid: the call asked for no JSON
    assert {(s.source, s.model, s.feature) for s in scores} == {("evaluator", "gpt-4o", "support")}


def test_a_list_turns_the_others_off_and_false_turns_all_off() -> None:
    content = text("", finish_reason="length")
    only = recorded_scores({"evaluators": ["truncated"]}, content)
    assert [(s.name, s.value) for s in only] == [("truncated", 1.0)]
    assert recorded_scores({"evaluators": False}, content) == []


def test_an_unknown_evaluator_name_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="unknown evaluator 'refusals'"):
        build_runtime(store=False, endpoint=False, evaluators=["refusals"])
    with pytest.raises(ConfigError, match="list of names"):
        build_runtime(store=False, endpoint=False, evaluators="empty")


def test_the_config_files_quality_section_is_checked() -> None:
    assert QualitySettings().evaluators is True
    assert QualitySettings.model_validate({"evaluators": ["empty"]}).evaluators == ["empty"]
    with pytest.raises(ValueError, match="unknown evaluator 'emptiness'"):
        QualitySettings.model_validate({"evaluators": ["emptiness"]})
    with pytest.raises(ValueError, match="extra"):
        QualitySettings.model_validate({"evaluator": True})


def test_the_gateway_config_reads_quality(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[quality]\nevaluators = ["refusal", "pii_leak"]\n')
    assert load_gateway_config(path).quality.evaluators == ["refusal", "pii_leak"]
    path.write_text('[quality]\nevaluators = ["nope"]\n')
    with pytest.raises(ConfigError, match="nope"):
        load_gateway_config(path)


def test_a_registered_evaluator_runs_with_the_builtins(own_evaluators: list[str]) -> None:
    @aivitals.evaluator("mentions_paris")
    def mentions_paris(call: Call, content: CallContent) -> float:
        return 1.0 if "paris" in (content.output_text or "").lower() else 0.0

    own_evaluators.append("mentions_paris")
    scores = {s.name: s for s in recorded_scores({}, ANSWER)}
    assert scores["mentions_paris"].value == 1.0
    assert scores["mentions_paris"].source == "evaluator"
    assert "empty" in scores


def test_a_registered_evaluator_may_return_a_whole_score_or_none(
    own_evaluators: list[str],
) -> None:
    def words(call: Call, content: CallContent) -> Score:
        count = len((content.output_text or "").split())
        return Score(call_id=call.id, name="words", value=count, max_value=1000, comment="n")

    aivitals.register_evaluator("words", words)
    aivitals.register_evaluator("never", lambda call, content: None)
    own_evaluators.extend(["words", "never"])
    scores = {s.name: s for s in recorded_scores({"evaluators": ["words", "never"]}, ANSWER)}
    assert list(scores) == ["words"]
    assert (scores["words"].value, scores["words"].max_value) == (6.0, 1000)


def test_a_user_evaluator_that_raises_is_counted_and_skipped_and_the_worker_lives(
    own_evaluators: list[str],
) -> None:
    threads: list[int] = []

    def broken(call: Call, content: CallContent) -> float:
        threads.append(threading.get_ident())
        raise KeyError("a bug in the application's evaluator")

    aivitals.register_evaluator("broken", broken)
    aivitals.register_evaluator("nonsense", lambda call, content: "yes")  # type: ignore[arg-type,return-value]
    aivitals.register_evaluator("too_big", lambda call, content: 7.0)  # outside 0..1
    own_evaluators.extend(["broken", "nonsense", "too_big"])
    memory = MemorySink()
    runtime = build_runtime(sinks=[memory], store=False, endpoint=False)
    recorder = runtime.recorder
    try:
        for _ in range(3):
            recorder.record(make_call(), ANSWER)
        assert recorder.flush()
    finally:
        recorder.close()
    errors = recorder.stats.quality_errors
    assert (errors["evaluator/broken"], errors["evaluator/nonsense"]) == (3, 3)
    assert errors["evaluator/too_big"] == 3
    assert errors["evaluators"] == 0  # the consumer itself never failed
    assert {s.name for s in memory.scores} == {"empty", "truncated", "refusal", "pii_leak"}
    assert len(memory.scores) == 12
    assert threads and threading.get_ident() not in threads


def test_builtin_names_cannot_be_taken_and_names_must_be_given() -> None:
    with pytest.raises(ValueError, match="built-in"):
        register_evaluator("refusal", lambda call, content: 0.0)
    with pytest.raises(ValueError, match="name"):
        register_evaluator(" ", lambda call, content: 0.0)
    assert list(registered())[:5] == ["empty", "truncated", "refusal", "json_valid", "pii_leak"]


def test_the_consumer_on_its_own_raises_what_an_evaluator_raised_without_a_counter() -> None:
    consumer = EvaluatorConsumer(lambda score: score, evaluators=["empty"])
    assert [s.name for s in consumer.evaluate(CALL, ANSWER)] == ["empty"]


def _fields(content: CallContent) -> dict[str, Any]:
    return {f: getattr(content, f) for f in content.__struct_fields__}
