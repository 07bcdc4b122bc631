"""Scores in Prometheus: every observation and verdict counted under its labels, however often
the same labels come (the sink keeps each label set's child at hand)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from aivitals.model import Score
from aivitals.sinks.prometheus import PrometheusSink


def _score(name: str, value: float, *, source: str = "evaluator", model: str = "m") -> Score:
    return Score(call_id="c1", name=name, value=value, source=source, model=model)


def test_each_score_is_observed_and_each_verdict_counted_under_its_labels() -> None:
    registry = CollectorRegistry()
    sink = PrometheusSink(registry=registry)
    for score in [
        _score("refusal", 1.0),
        _score("refusal", 0.0),
        _score("refusal", 0.0),
        _score("empty", 0.0),
        _score("refusal", 1.0, model="other"),
        _score("relevance", 0.5, source="judge"),
        _score("refusal", 1.0, source="api"),  # not an evaluator's: observed, not a verdict
    ]:
        sink.on_score(score)

    def count(name: str, model: str = "m") -> float | None:
        labels = {"name": name, "model": model, "feature": ""}
        return registry.get_sample_value("aivitals_quality_score_count", labels)

    def verdicts(name: str, result: str, model: str = "m") -> float | None:
        labels = {"name": name, "result": result, "model": model, "feature": ""}
        return registry.get_sample_value("aivitals_evaluations_total", labels)

    assert [count("refusal"), count("empty"), count("refusal", "other"), count("relevance")] == [
        4.0,
        1.0,
        1.0,
        1.0,
    ]
    assert [verdicts("refusal", "true"), verdicts("refusal", "false")] == [1.0, 2.0]
    # No verdict of a kind never seen: no series at 0.
    assert verdicts("empty", "true") is None
    assert verdicts("empty", "false") == 1.0
    assert verdicts("refusal", "false", "other") is None
    assert verdicts("relevance", "true") is None and verdicts("relevance", "false") is None
