"""The SDK goes through the same validator and never raises into the application.

A value out of bounds is logged and dropped: the call is recorded without it and tagged
``aivitals.invalid=<field>``; only a call that cannot be recorded at all (no usable model name) is
dropped whole, with a warning. Scores lose a bad comment or hint; a bad name or value refuses
the score (``None``), as before.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

import aivitals

from .conftest import Recorded


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="aivitals.sdk")
    return caplog


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        ({"input_tokens": 9223372036854775807}, "input_tokens"),
        ({"input_tokens": 1_000_000_001}, "input_tokens"),
        ({"output_tokens": 10**12, "reasoning_tokens": 5}, "output_tokens"),
    ],
)
def test_token_counts_over_the_limit_are_dropped_and_named(
    recorded: Recorded, warnings: pytest.LogCaptureFixture, usage: dict[str, int], field: str
) -> None:
    with aivitals.track(model="gpt-4o-mini", provider="openai", feature="qa") as call:
        call.set_usage(**usage)  # type: ignore[arg-type]  # only counts, parametrized
    (made,) = recorded.calls()
    assert (made.input_tokens, made.output_tokens, made.cost_usd) == (0, 0, None)
    assert made.tags["aivitals.invalid"] == field
    assert made.feature == "qa"
    assert field in warnings.text


@pytest.mark.parametrize(
    ("attribution", "field"),
    [
        ({"user": "u" * 201}, "user"),
        ({"feature": "bad \ud800"}, "feature"),
        ({"team": "a\x00b"}, "team"),
        ({"environment": "e" * 65}, "environment"),
        ({"prompt_version": 7}, "prompt_version"),
        ({"endpoint": "/" * 201}, "endpoint"),
    ],
)
def test_bad_attribution_is_dropped_and_named(
    recorded: Recorded,
    warnings: pytest.LogCaptureFixture,
    attribution: dict[str, object],
    field: str,
) -> None:
    with aivitals.track(model="gpt-4o-mini", provider="openai", **attribution) as call:  # type: ignore[arg-type]  # a wrong type on purpose
        call.set_usage(input_tokens=100, output_tokens=10)
    (made,) = recorded.calls()
    assert getattr(made, field) is None
    assert made.tags["aivitals.invalid"] == field
    assert made.input_tokens == 100 and made.cost_usd is not None  # the rest is kept
    assert f"invalid {field}" in warnings.text


def test_several_bad_fields_are_all_named(recorded: Recorded) -> None:
    with aivitals.track(model="gpt-4o-mini", user="u" * 300, team="t\udc00") as call:
        call.set_usage(input_tokens=10**15)
    (made,) = recorded.calls()
    assert (made.user, made.team, made.input_tokens) == (None, None, 0)
    assert sorted(made.tags["aivitals.invalid"].split(",")) == ["input_tokens", "team", "user"]


def test_bad_tags_are_dropped_and_good_ones_kept(recorded: Recorded) -> None:
    tags = {"ok": "yes", "\ud800": "v", "long": "v" * 600, "": "empty", "nul": "a\x00"}
    with aivitals.track(model="gpt-4o-mini", tags=tags):
        pass
    (made,) = recorded.calls()
    assert made.tags == {"ok": "yes", "aivitals.invalid": "tags"}


def test_too_many_tags_keep_the_first_ones_and_the_marker(recorded: Recorded) -> None:
    with aivitals.track(model="gpt-4o-mini", tags={f"k{i}": i for i in range(100)}):
        pass
    (made,) = recorded.calls()
    assert len(made.tags) == 64
    assert made.tags["aivitals.invalid"] == "tags"
    assert made.tags["k0"] == "0" and "k63" not in made.tags


def test_a_ttft_after_the_end_is_dropped(recorded: Recorded) -> None:
    with aivitals.track(model="gpt-4o-mini") as call:
        call.ttft_ms = 10**9
    (made,) = recorded.calls()
    assert made.ttft_ms is None and made.tags["aivitals.invalid"] == "ttft_ms"


def test_a_bad_finish_reason_or_response_model_is_dropped(recorded: Recorded) -> None:
    with aivitals.track(model="gpt-4o-mini") as call:
        call.finish_reason = "stop" * 20
        call.response_model = "m\ud800"
    (made,) = recorded.calls()
    assert (made.finish_reason, made.response_model) == (None, None)
    assert made.tags["aivitals.invalid"] == "response_model,finish_reason"


@pytest.mark.parametrize("model", ["m" * 201, "gpt\ud800", "a\x00b"])
def test_a_call_without_a_usable_model_is_dropped_with_a_warning(
    recorded: Recorded, warnings: pytest.LogCaptureFixture, model: str
) -> None:
    with aivitals.track(model=model, provider="openai") as call:
        call.set_usage(input_tokens=10, output_tokens=1)
    assert call.recorded is None
    assert recorded.calls() == []
    assert "not recorded" in warnings.text and "model" in warnings.text


def test_the_application_exception_still_reaches_the_caller_unchanged(recorded: Recorded) -> None:
    with pytest.raises(KeyError), aivitals.track(model="gpt-4o-mini", user="u" * 500):
        raise KeyError("app")
    (made,) = recorded.calls()
    assert made.status == "error" and made.user is None


def test_finish_without_start_records_a_sane_start_time(recorded: Recorded) -> None:
    call = aivitals.track(model="gpt-4o-mini")
    assert call.finish() is not None
    (made,) = recorded.calls()
    assert abs(made.started_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_observe_records_without_a_bad_field(recorded: Recorded) -> None:
    @aivitals.observe(model="gpt-4o-mini", feature="f" * 300, user="ok")
    def answer() -> str:
        aivitals.current_call().set_usage(input_tokens=5, output_tokens=10**11)  # type: ignore[union-attr]  # inside observe
        return "done"

    assert answer() == "done"
    (made,) = recorded.calls()
    assert (made.feature, made.user, made.output_tokens) == (None, "ok", 0)
    assert made.tags["aivitals.invalid"] == "output_tokens,feature"


async def test_async_observe_records_without_a_bad_field(recorded: Recorded) -> None:
    @aivitals.observe(model="gpt-4o-mini", environment="\udfff")
    async def answer() -> int:
        return 42

    assert await answer() == 42
    (made,) = recorded.calls()
    assert made.environment is None and made.tags["aivitals.invalid"] == "environment"


def test_a_score_keeps_its_value_and_loses_a_bad_comment(
    recorded: Recorded, warnings: pytest.LogCaptureFixture
) -> None:
    made = aivitals.score("c1", "relevance", 0.9, comment="c" * 5000, feature="x\ud800")
    assert made is not None and made.comment is None and made.feature is None
    (stored,) = recorded.scores()
    assert (stored.value, stored.comment) == (0.9, None)
    assert "comment" in warnings.text


@pytest.mark.parametrize(
    "options",
    [
        {"value": 1e300, "max_value": 1e301},
        {"value": 0.5, "min_value": -1e300},
        {"value": 0.5, "name": "n" * 201},
        {"value": 0.5, "name": "bad\ud800"},
        {"value": 0.5, "source": "s" * 65},
        {"value": 0.5, "call_id": "c" * 37},
    ],
)
def test_a_score_with_a_bad_value_or_name_is_refused_without_raising(
    recorded: Recorded, warnings: pytest.LogCaptureFixture, options: dict[str, object]
) -> None:
    fields: dict[str, object] = {"call_id": "c1", "name": "relevance", **options}
    assert aivitals.score(**fields) is None  # type: ignore[arg-type]  # parametrized
    assert recorded.scores() == []
    assert "refused" in warnings.text


def test_a_score_from_inside_a_call_loses_a_bad_comment(recorded: Recorded) -> None:
    with aivitals.track(model="gpt-4o-mini") as call:
        call.score("relevance", 0.7, comment="\ud800")
    scores = recorded.scores()
    assert [(s.name, s.value, s.comment) for s in scores] == [("relevance", 0.7, None)]
