"""The semantic cache's hit decision on the labelled pairs of tests/data/semantic_pairs.yaml.

Each pair's first question is cached, its second asked, through `SemanticCache` (embedding,
search, the words-level checks): a hit is the decision under test. Precision and recall are
scikit-learn's, against the labels written by hand. The table in docs/gateway.md ("Semantic
cache") comes from `decisions` at the thresholds of `THRESHOLDS`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.metrics import precision_score, recall_score  # type: ignore[import-untyped]

from aivitals.gateway.embedding import WordLlamaEmbedder
from aivitals.gateway.semantic_cache import DEFAULT_THRESHOLD, SemanticCache

PAIRS = Path(__file__).parent / "data" / "semantic_pairs.yaml"
THRESHOLDS = (0.80, 0.85, 0.875, 0.90, 0.92, 0.94)
PRECISION_FLOOR = 0.95
"""A wrong answer replayed costs more than a call upstream: at most 1 hit in 20 may be wrong."""
RECALL_FLOOR = 0.5
"""And a cache so strict that nothing hits is no cache: half the paraphrases at least."""


def pairs() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(PAIRS.read_text())["pairs"]
    return loaded


def body(question: str) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": question},
        ],
    }


@cache
def decisions(threshold: float) -> tuple[bool, ...]:
    """Whether each pair's second question gets the first one's answer at ``threshold``."""
    semantic = SemanticCache(
        embedder=WordLlamaEmbedder(), threshold=threshold, max_entries=1000, clock=lambda: 0.0
    )
    hits = []
    for number, pair in enumerate(pairs()):
        team = f"team-{number}"  # a partition per pair: only the pair's own question can match
        first = semantic.question("chat", body(pair["a"]), scope_value=team)
        assert first is not None
        pending = semantic.lookup(first).pending
        assert pending is not None
        semantic.add(pending, f"answer-{number}")
        second = semantic.question("chat", body(pair["b"]), scope_value=team)
        assert second is not None
        found = semantic.lookup(second).match
        assert found is None or found.value.exact_key == f"answer-{number}"
        hits.append(found is not None)
    return tuple(hits)


def labels() -> np.ndarray:
    return np.array([pair["kind"] == "paraphrase" for pair in pairs()])


def table() -> list[tuple[float, float, float, int]]:
    """(threshold, precision, recall, wrong hits) at each of `THRESHOLDS`."""
    truth = labels()
    rows = []
    for threshold in THRESHOLDS:
        hit = np.array(decisions(threshold))
        rows.append(
            (
                threshold,
                float(precision_score(truth, hit, zero_division=1.0)),
                float(recall_score(truth, hit)),
                int((hit & ~truth).sum()),
            )
        )
    return rows


def test_the_labelled_set_has_at_least_200_pairs_of_each_side() -> None:
    kinds = [pair["kind"] for pair in pairs()]
    assert len(kinds) >= 200
    assert kinds.count("paraphrase") >= 100 and len(kinds) - kinds.count("paraphrase") >= 100
    assert {"negation", "entity", "number", "unit", "language", "order"} <= set(kinds)
    assert len({(pair["a"], pair["b"]) for pair in pairs()}) == len(kinds)  # no pair twice


def test_the_default_threshold_keeps_precision_above_the_floor_and_still_hits() -> None:
    truth, hit = labels(), np.array(decisions(DEFAULT_THRESHOLD))
    assert precision_score(truth, hit) >= PRECISION_FLOOR
    assert recall_score(truth, hit) >= RECALL_FLOOR


def test_every_negated_question_is_a_miss_at_the_default_threshold() -> None:
    hit = decisions(DEFAULT_THRESHOLD)
    negations = [i for i, pair in enumerate(pairs()) if pair["kind"] == "negation"]
    assert len(negations) >= 20
    assert [pairs()[i]["b"] for i in negations if hit[i]] == []


def test_a_looser_threshold_trades_precision_for_recall() -> None:
    rows = table()
    recalls = [recall for _, _, recall, _ in rows]
    assert recalls == sorted(recalls, reverse=True)  # each stricter threshold hits no more
    loosest, default = rows[0], next(r for r in rows if r[0] == DEFAULT_THRESHOLD)
    assert loosest[1] < default[1] and loosest[2] > default[2]


@pytest.mark.parametrize("kind", ["order", "number", "unit"])
def test_word_order_and_figures_that_an_average_of_word_vectors_cannot_see_are_misses(
    kind: str,
) -> None:
    hit = decisions(DEFAULT_THRESHOLD)
    wrong = [p for p, h in zip(pairs(), hit, strict=True) if h and p["kind"] == kind]
    # Units: "2 hours" / "2 days" to minutes scores 0.93 and passes every check: the one
    # known wrong hit of the set at the default threshold (docs/gateway.md).
    allowed = 1 if kind == "unit" else 0
    assert len(wrong) <= allowed, wrong
