"""Each evaluator's precision and recall on the labelled answers, held to docs/quality.md.

tests/data/quality_labelled.jsonl holds 200+ answers written and labelled by hand: refusals and
answers that only open like one in English, French, German and Spanish, personal data and its
lookalikes (dates, versions, order numbers, numbers failing Luhn, placeholder keys), empty
answers, and JSON asked for with and without a schema. The figures are computed here with
scikit-learn, from the labels and the evaluators' verdicts, and must be those the page prints:
a change to a detector that moves them must update the page too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import precision_score, recall_score  # type: ignore[import-untyped]

from aivitals.content import CallContent
from aivitals.quality.evaluators import BUILTIN

from .support.helpers import make_call

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "quality_labelled.jsonl"
DOC = ROOT / "docs" / "quality.md"
MEASURED = ("refusal", "pii_leak", "empty", "json_valid")
LANGUAGES = ("en", "fr", "de", "es")


def rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text("utf-8").splitlines() if line.strip()]


def verdicts(name: str, subset: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """(truth, predicted) over the rows labelled for ``name``; json_valid's positive is invalid."""
    call = make_call()
    truth, predicted = [], []
    for row in subset:
        if name not in row["labels"]:
            continue
        content = CallContent(
            output_text=row["text"],
            response_format=row.get("response_format"),
            json_schema=row.get("json_schema"),
        )
        value = BUILTIN[name](call, content)
        assert isinstance(value, float), (name, row["id"])
        label = row["labels"][name]
        if name == "json_valid":
            truth.append(1 - label)
            predicted.append(1 - int(value))
        else:
            truth.append(label)
            predicted.append(int(value))
    return truth, predicted


def measured(name: str, subset: list[dict[str, Any]]) -> tuple[int, int, str, str]:
    truth, predicted = verdicts(name, subset)
    precision = precision_score(truth, predicted, zero_division=0)
    recall = recall_score(truth, predicted, zero_division=0)
    return len(truth), sum(truth), f"{precision:.2f}", f"{recall:.2f}"


def documented(heading: str) -> dict[str, tuple[int, int, str, str]]:
    """The table under ``heading`` in docs/quality.md: first cell -> (answers, positives, P, R)."""
    text = DOC.read_text("utf-8")
    start = text.index(heading)
    table: dict[str, tuple[int, int, str, str]] = {}
    for line in text[start:].splitlines()[1:]:
        if table and not line.startswith("|"):
            break
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[1].replace(",", "").isdigit():
            continue
        table[cells[0]] = (int(cells[1].replace(",", "")), int(cells[2]), cells[3], cells[4])
    return table


def test_the_data_set_has_200_answers_in_four_languages_each_with_refusals_and_not() -> None:
    data = rows()
    assert len(data) >= 200
    assert len({row["id"] for row in data}) == len(data)
    for language in LANGUAGES:
        labels = [row["labels"]["refusal"] for row in data if row["lang"] == language]
        assert 0 < sum(labels) < len(labels), language
    assert sum(row["labels"]["pii_leak"] for row in data) >= 40
    assert sum(row["labels"]["empty"] for row in data) >= 5
    assert sum("json_valid" in row["labels"] for row in data) >= 20


@pytest.mark.parametrize("name", MEASURED)
def test_each_evaluators_precision_and_recall_are_the_ones_documented(name: str) -> None:
    table = documented("Measured on the labelled answers")
    assert table[name] == measured(name, rows())


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_refusal_figures_by_language_are_the_ones_documented(language: str) -> None:
    table = documented("The refusal detector by language")
    subset = [row for row in rows() if row["lang"] == language]
    assert table[language] == measured("refusal", subset)


def test_every_miss_is_a_row_noted_as_one() -> None:
    # A miss the data set does not own up to is a regression: the page's figures would hide it.
    noted = {row["id"] for row in rows() if "note" in row}
    missed = set()
    data = rows()
    for name in MEASURED:
        labelled = [row for row in data if name in row["labels"]]
        truth, predicted = verdicts(name, labelled)
        missed |= {
            row["id"] for row, t, p in zip(labelled, truth, predicted, strict=True) if t != p
        }
    assert missed == noted
    assert all(re.fullmatch(r"[a-z]+-\d{3}", row_id) for row_id in missed)
