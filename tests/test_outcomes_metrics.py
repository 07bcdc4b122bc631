"""Labelled-outcome metrics over the store, each figure checked against scikit-learn computed
here, from the values the test wrote (never from what the store or the query read back)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics  # type: ignore[import-untyped]

from aivitals.model import Call, Outcome
from aivitals.query import Queries, parse_since
from aivitals.query.filters import Filters
from aivitals.query.outcomes import ClassMetrics, MissingExtra, NumberMetrics
from aivitals.store.sql import SqlStore

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
MODELS = ("gpt-4o-mini", "claude-haiku")
LABELS = ("bug", "question", "praise")


@dataclass
class Truth:
    """What the test wrote, per model: the inputs scikit-learn is given here."""

    predicted: list[str]
    actual: list[str]
    spam_actual: list[bool]
    spam_probability: list[float]  # the probability of True
    stars_predicted: list[float]
    stars_actual: list[float]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore.open(tmp_path / "aivitals.db")
    yield store
    store.close()


def fill(store: SqlStore, *, n: int = 120, seed: int = 13) -> dict[str, Truth]:
    rng = np.random.default_rng(seed)
    truths: dict[str, Truth] = {}
    calls: list[Call] = []
    outcomes: list[Outcome] = []
    for m, model in enumerate(MODELS):
        truth = Truth([], [], [], [], [], [])
        for i in range(n):
            call = Call(
                provider="openai",
                model=model,
                latency_ms=100.0,
                feature="triage",
                started_at=NOW - timedelta(hours=1, seconds=i),
            )
            calls.append(call)
            actual = LABELS[int(rng.integers(3))]
            # Right about 70% of the time (the second model less), wrong otherwise.
            right = rng.random() < (0.7 - 0.2 * m)
            predicted = actual if right else LABELS[int(rng.integers(3))]
            truth.predicted.append(predicted)
            truth.actual.append(actual)
            outcomes.append(Outcome.of(call.id, predicted=predicted, actual=actual))
            spam = bool(rng.random() < 0.4)
            chance = float(np.clip(rng.normal(0.65 if spam else 0.35, 0.2), 0.0, 1.0))
            truth.spam_actual.append(spam)
            truth.spam_probability.append(chance)
            outcomes.append(Outcome.of(call.id, predicted=chance, actual=spam, name="spam"))
            stars = float(rng.integers(1, 6))
            guess = float(np.round(stars + rng.normal(0, 1.0 + m), 2))
            truth.stars_predicted.append(guess)
            truth.stars_actual.append(stars)
            outcomes.append(Outcome.of(call.id, predicted=guess, actual=stars, name="stars"))
        truths[model] = truth
    store.write(calls, [], outcomes)
    return truths


def by_model(store: SqlStore, **options: object) -> dict[str | None, dict[str, object]]:
    window = parse_since("24h", now=NOW)
    groups = Queries(store.engine).outcomes(window, by=["model"], **options)  # type: ignore[arg-type]
    return {group.key[0]: dict(group.tasks) for group in groups}


def test_classification_figures_are_scikit_learns(store: SqlStore) -> None:
    truths = fill(store)
    found = by_model(store)
    assert set(found) == set(MODELS)
    for model, truth in truths.items():
        task = found[model]["default"]
        assert isinstance(task, ClassMetrics)
        assert task.count == len(truth.actual)
        assert task.accuracy == pytest.approx(metrics.accuracy_score(truth.actual, truth.predicted))
        labels = sorted(LABELS)
        p, r, f, s = metrics.precision_recall_fscore_support(
            truth.actual, truth.predicted, labels=labels, zero_division=0
        )
        for i, label in enumerate(labels):
            figures = task.classes[label]
            assert (figures.precision, figures.recall, figures.f1) == pytest.approx(
                (p[i], r[i], f[i])
            )
            assert figures.support == s[i] == truth.actual.count(label)
        assert task.macro_f1 == pytest.approx(
            metrics.f1_score(truth.actual, truth.predicted, average="macro")
        )
        assert task.macro_precision == pytest.approx(
            metrics.precision_score(truth.actual, truth.predicted, average="macro")
        )
        assert task.macro_recall == pytest.approx(
            metrics.recall_score(truth.actual, truth.predicted, average="macro")
        )
        assert task.roc_auc is None  # three classes
    # The models differ, so a group cannot be answering for the other.
    first, second = (found[model]["default"] for model in MODELS)
    assert isinstance(first, ClassMetrics) and isinstance(second, ClassMetrics)
    assert first.accuracy != second.accuracy


def test_roc_auc_from_probabilities_is_scikit_learns(store: SqlStore) -> None:
    truths = fill(store)
    found = by_model(store)
    for model, truth in truths.items():
        task = found[model]["spam"]
        assert isinstance(task, ClassMetrics)
        assert task.roc_auc == pytest.approx(
            metrics.roc_auc_score(truth.spam_actual, truth.spam_probability)
        )
        predicted = [chance >= 0.5 for chance in truth.spam_probability]
        assert task.accuracy == pytest.approx(metrics.accuracy_score(truth.spam_actual, predicted))
        assert task.classes["true"].recall == pytest.approx(
            metrics.recall_score(truth.spam_actual, predicted)
        )
        assert task.roc_auc is not None and 0.6 < task.roc_auc < 0.95  # separable, not perfectly


def test_mae_and_rmse_are_scikit_learns(store: SqlStore) -> None:
    truths = fill(store)
    found = by_model(store)
    for model, truth in truths.items():
        task = found[model]["stars"]
        assert isinstance(task, NumberMetrics)
        assert task.mae == pytest.approx(
            metrics.mean_absolute_error(truth.stars_actual, truth.stars_predicted)
        )
        errors = np.subtract(truth.stars_predicted, truth.stars_actual)
        assert task.rmse == pytest.approx(math.sqrt(float(np.mean(errors**2))))


def test_all_models_together_and_a_filter(store: SqlStore) -> None:
    truths = fill(store)
    window = parse_since("24h", now=NOW)
    [together] = Queries(store.engine).outcomes(window)
    everything = [label for model in MODELS for label in truths[model].actual]
    guesses = [label for model in MODELS for label in truths[model].predicted]
    task = together.tasks["default"]
    assert isinstance(task, ClassMetrics)
    assert task.count == 2 * 120
    assert task.accuracy == pytest.approx(metrics.accuracy_score(everything, guesses))
    [one] = Queries(store.engine).outcomes(window, Filters(model=MODELS[1]))
    only = one.tasks["default"]
    assert isinstance(only, ClassMetrics)
    truth = truths[MODELS[1]]
    assert only.accuracy == pytest.approx(metrics.accuracy_score(truth.actual, truth.predicted))


def test_a_corrected_label_counts_once_with_the_last_one_and_the_window_is_the_calls(
    store: SqlStore,
) -> None:
    inside = Call(provider="openai", model="m", latency_ms=1.0, started_at=NOW - timedelta(hours=2))
    outside = Call(provider="openai", model="m", latency_ms=1.0, started_at=NOW - timedelta(days=3))
    first = Outcome.of(inside.id, predicted="a", actual="b", created_at=NOW - timedelta(hours=1))
    corrected = Outcome.of(inside.id, predicted="a", actual="a", created_at=NOW)
    old = Outcome.of(outside.id, predicted="a", actual="b", created_at=NOW)
    store.write([inside, outside], [], [corrected, first, old])
    [group] = Queries(store.engine).outcomes(parse_since("24h", now=NOW))
    task = group.tasks["default"]
    assert isinstance(task, ClassMetrics)
    assert (task.count, task.accuracy) == (1, 1.0)


def test_without_scikit_learn_the_error_says_what_to_install(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(store, n=3)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    with pytest.raises(MissingExtra) as error:
        by_model(store)
    assert "pip install 'aivitals[quality]'" in str(error.value)
    # No outcomes, nothing to compute: no error either.
    assert Queries(store.engine).outcomes(parse_since("24h", now=NOW - timedelta(days=5))) == []
