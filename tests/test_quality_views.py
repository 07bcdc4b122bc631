"""Quality in every view: the evaluators' verdicts as Prometheus counters, their rates from the
store by model, feature and prompt version, and the alert engine reading them from the store.

Every expected rate here is counted from the verdicts the test wrote, with numpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from aivitals.alerts import default_rules_text, parse_rules
from aivitals.alerts.signals import read_store
from aivitals.model import Call, Score
from aivitals.query import Queries, parse_since
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.store.sql import SqlStore

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
EVALUATORS = ("empty", "truncated", "refusal", "json_valid", "pii_leak")


def test_evaluator_verdicts_are_counted_by_result_and_other_scores_are_not() -> None:
    sink = PrometheusSink()
    for value in (1.0, 0.0, 0.0, 1.0, 0.0):
        sink.on_score(
            Score(
                call_id="c",
                name="refusal",
                value=value,
                source="evaluator",
                model="gpt-4o",
                feature="chat",
            )
        )
    sink.on_score(Score(call_id="c", name="helpfulness", value=1.0, model="gpt-4o"))
    sink.on_score(Score(call_id="c", name="relevance", value=0.5, source="evaluator"))

    def count(name: str, result: str, model: str = "gpt-4o", feature: str = "chat") -> float | None:
        labels = {"name": name, "result": result, "model": model, "feature": feature}
        return sink.registry.get_sample_value("aivitals_evaluations_total", labels)

    assert (count("refusal", "true"), count("refusal", "false")) == (2.0, 3.0)
    assert count("helpfulness", "true") is None  # not an evaluator's
    assert count("relevance", "false", "", "") is None  # an evaluator's, but not a verdict
    # The histogram still has every score, as before.
    histogram = {"name": "refusal", "model": "gpt-4o", "feature": "chat"}
    assert sink.registry.get_sample_value("aivitals_quality_score_count", histogram) == 5.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore.open(tmp_path / "aivitals.db")
    yield store
    store.close()


def verdict_store(store: SqlStore, seed: int = 5) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Calls of two models and two prompt versions with random verdicts from every evaluator,
    and a judge score; returns the values written, by (model, prompt version) and name."""
    rng = np.random.default_rng(seed)
    written: dict[tuple[str, str], dict[str, list[float]]] = {}
    calls: list[Call] = []
    scores: list[Score] = []
    chances = {
        "empty": 0.05,
        "truncated": 0.1,
        "refusal": 0.08,
        "json_valid": 0.9,
        "pii_leak": 0.02,
    }
    for model in ("gpt-4o", "claude-haiku"):
        for version in ("v1", "v2"):
            values: dict[str, list[float]] = {name: [] for name in (*EVALUATORS, "judge.relevance")}
            for i in range(150):
                call = Call(
                    provider="openai",
                    model=model,
                    latency_ms=10.0,
                    prompt_version=version,
                    feature="support",
                    started_at=NOW - timedelta(minutes=30, seconds=i),
                )
                calls.append(call)
                for name, chance in chances.items():
                    value = float(rng.random() < chance * (2 if version == "v2" else 1))
                    values[name].append(value)
                    scores.append(
                        Score(call_id=call.id, name=name, value=value, source="evaluator")
                    )
                judged = float(np.round(rng.random(), 3))
                values["judge.relevance"].append(judged)
                scores.append(
                    Score(call_id=call.id, name="judge.relevance", value=judged, source="judge")
                )
            written[(model, version)] = values
    store.write(calls, scores)
    return written


def test_rates_and_mean_scores_by_model_and_prompt_version(store: SqlStore) -> None:
    written = verdict_store(store)
    groups = Queries(store.engine).quality(
        parse_since("24h", now=NOW), by=["model", "prompt_version"]
    )
    found = {group.key: group for group in groups}
    assert set(found) == set(written)
    for key, values in written.items():
        group = found[key]
        assert group.rates["refusal"].rate == pytest.approx(np.mean(values["refusal"]))
        assert group.rates["empty"].rate == pytest.approx(np.mean(values["empty"]))
        assert group.rates["truncated"].rate == pytest.approx(np.mean(values["truncated"]))
        assert group.rates["pii_leak"].rate == pytest.approx(np.mean(values["pii_leak"]))
        invalid = np.mean([1.0 - value for value in values["json_valid"]])
        assert group.rates["invalid_json"].rate == pytest.approx(invalid)
        assert group.rates["refusal"].count == 150
        assert set(group.scores) == {"judge.relevance"}  # the evaluators are rates, not scores
        assert group.scores["judge.relevance"].rate == pytest.approx(
            np.mean(values["judge.relevance"])
        )


def test_the_default_refusal_rule_reads_the_stores_rate_and_the_quality_rules_skip_rates(
    store: SqlStore,
) -> None:
    written = verdict_store(store)
    rules = {rule.name: rule for rule in parse_rules(default_rules_text()).rules}
    queries = Queries(store.engine)
    refusals = read_store(rules["RefusalRateHigh"], queries, NOW, ZoneInfo("UTC"))
    for model in ("gpt-4o", "claude-haiku"):
        both = [v for version in ("v1", "v2") for v in written[(model, version)]["refusal"]]
        assert refusals[(("model", model),)] == pytest.approx(np.mean(both))
    degraded = read_store(rules["QualityDegraded"], queries, NOW, ZoneInfo("UTC"))
    # Only the judge's score: a refusal rate of 8% is not a quality of 0.08.
    assert list(degraded) == [(("score", "judge.relevance"),)]
