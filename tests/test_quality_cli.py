"""``aivitals quality``: its figures against numpy and scikit-learn computed here from the same
records the test wrote into the store."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics  # type: ignore[import-untyped]
from typer.testing import CliRunner

from aivitals.cli import app
from aivitals.model import Call, Outcome, Score
from aivitals.store.sql import SqlStore

runner = CliRunner()
MODELS = ("gpt-4o", "claude-haiku")


def write_store(path: Path, seed: int = 21) -> dict[str, dict[str, Any]]:
    """An hour of calls per model with evaluator verdicts, a judge score and outcomes."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    written: dict[str, dict[str, Any]] = {}
    calls: list[Call] = []
    scores: list[Score] = []
    outcomes: list[Outcome] = []
    for m, model in enumerate(MODELS):
        seen: dict[str, Any] = {
            "refusal": [],
            "json_valid": [],
            "judge.relevance": [],
            "label": ([], []),
            "spam": ([], []),
            "stars": ([], []),
        }
        for i in range(80):
            call = Call(
                provider="openai",
                model=model,
                latency_ms=20.0,
                started_at=now - timedelta(minutes=30, seconds=i),
            )
            calls.append(call)
            refused = float(rng.random() < 0.05 + 0.1 * m)
            valid = float(rng.random() < 0.9)
            judged = float(np.round(rng.random(), 2))
            seen["refusal"].append(refused)
            seen["json_valid"].append(valid)
            seen["judge.relevance"].append(judged)
            scores += [
                Score(call_id=call.id, name="refusal", value=refused, source="evaluator"),
                Score(call_id=call.id, name="json_valid", value=valid, source="evaluator"),
                Score(call_id=call.id, name="judge.relevance", value=judged, source="judge"),
            ]
            actual = str(rng.choice(["a", "b", "c"]))
            predicted = actual if rng.random() < 0.6 else str(rng.choice(["a", "b", "c"]))
            seen["label"][0].append(predicted)
            seen["label"][1].append(actual)
            outcomes.append(Outcome.of(call.id, predicted=predicted, actual=actual))
            spam = bool(rng.random() < 0.5)
            chance = float(np.clip(rng.normal(0.6 if spam else 0.4, 0.2), 0, 1))
            seen["spam"][0].append(chance)
            seen["spam"][1].append(spam)
            outcomes.append(Outcome.of(call.id, predicted=chance, actual=spam, name="spam"))
            stars = float(rng.integers(1, 6))
            guess = float(stars + rng.normal(0, 1))
            seen["stars"][0].append(guess)
            seen["stars"][1].append(stars)
            outcomes.append(Outcome.of(call.id, predicted=guess, actual=stars, name="stars"))
        written[model] = seen
    store = SqlStore.open(path)
    store.write(calls, scores, outcomes)
    store.close()
    return written


def quality_json(path: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["quality", "--db", str(path), "--json", *args])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_the_json_figures_are_numpys_and_scikit_learns(tmp_path: Path) -> None:
    path = tmp_path / "aivitals.db"
    written = write_store(path)
    document = quality_json(path, "--since", "24h", "--by", "model")
    groups = {group["group"]["model"]: group for group in document["groups"]}
    assert set(groups) == set(MODELS)
    assert document["outcomes_unavailable"] is None
    for model, seen in written.items():
        group = groups[model]
        assert group["rates"]["refusal"]["rate"] == pytest.approx(np.mean(seen["refusal"]))
        assert group["rates"]["refusal"]["count"] == 80
        invalid = 1.0 - np.mean(seen["json_valid"])
        assert group["rates"]["invalid_json"]["rate"] == pytest.approx(invalid)
        assert group["scores"]["judge.relevance"]["mean"] == pytest.approx(
            np.mean(seen["judge.relevance"])
        )
        predicted, actual = seen["label"]
        task = group["outcomes"]["default"]
        assert task["accuracy"] == pytest.approx(metrics.accuracy_score(actual, predicted))
        assert task["macro_f1"] == pytest.approx(
            metrics.f1_score(actual, predicted, average="macro")
        )
        assert task["classes"]["b"]["recall"] == pytest.approx(
            metrics.recall_score(actual, predicted, labels=["b"], average=None)[0]
        )
        chances, spam = seen["spam"]
        assert group["outcomes"]["spam"]["roc_auc"] == pytest.approx(
            metrics.roc_auc_score(spam, chances)
        )
        guesses, stars = seen["stars"]
        errors = np.subtract(guesses, stars)
        assert group["outcomes"]["stars"]["mae"] == pytest.approx(float(np.mean(np.abs(errors))))
        assert group["outcomes"]["stars"]["rmse"] == pytest.approx(
            math.sqrt(float(np.mean(errors**2)))
        )


def test_the_table_shows_each_models_rates_and_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "aivitals.db"
    written = write_store(path)
    result = runner.invoke(app, ["quality", "--db", str(path), "--by", "model"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for title in ("Evaluator rates, last 24h", "Mean scores", "Labelled outcomes"):
        assert title in text
    for model, seen in written.items():
        row = next(line for line in text.splitlines() if line.strip().startswith(model))
        assert f"{np.mean(seen['refusal']):.1%}" in row
        predicted, actual = seen["label"]
        outcome_row = next(
            line for line in text.splitlines() if line.split()[:2] == [model, "default"]
        )
        assert f"{metrics.accuracy_score(actual, predicted):.3f}" in outcome_row


def test_without_scikit_learn_the_rates_still_show_and_it_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "aivitals.db"
    written = write_store(path)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    document = quality_json(path)
    assert "pip install 'aivitals[quality]'" in document["outcomes_unavailable"]
    group = next(g for g in document["groups"] if g["group"]["model"] == MODELS[0])
    assert group["rates"]["refusal"]["rate"] == pytest.approx(
        np.mean(written[MODELS[0]]["refusal"])
    )
    result = runner.invoke(app, ["quality", "--db", str(path)])
    assert result.exit_code == 0
    assert "pip install 'aivitals[quality]'" in result.stderr


def test_a_bad_by_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "aivitals.db"
    write_store(path)
    result = runner.invoke(app, ["quality", "--db", str(path), "--by", "colour"])
    assert result.exit_code == 2
    assert "--by: unknown field 'colour'" in result.stderr
