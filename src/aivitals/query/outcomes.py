"""Labelled-outcome metrics: accuracy, precision, recall, F1, ROC AUC, MAE and RMSE, by group.

An outcome counts with its call, as a score does: a window's outcomes are those of the calls that
started in it, joined by ``call_id``, grouped by the call's fields. A call given two outcomes of
the same task (``name``), a label corrected later say, counts once, with the one created last.

Classification (``kind`` ``class``): accuracy, precision, recall and F1 per class (the labels of
``actual`` and ``predicted`` together) and their unweighted (macro) means. ROC AUC for two
classes when every outcome has its ``probability`` and both classes occur: the score of the
greater label (sorted, as scikit-learn picks the positive class) is the probability when it was
predicted, one minus it otherwise. Regression (``number``): MAE and RMSE.

The figures come from scikit-learn (the ``quality`` extra: ``pip install 'aivitals[quality]'``),
imported on first use: 51 MB and over a second of import that only these reads should pay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from aivitals.query.errors import QueryError
from aivitals.query.filters import Filters, call_conditions
from aivitals.query.window import Window
from aivitals.store.schema import calls, outcomes

INSTALL_HINT = "pip install 'aivitals[quality]'"


class MissingExtra(QueryError):
    """scikit-learn is not installed: the message says what to install."""

    def __init__(self) -> None:
        super().__init__(
            None,
            f"labelled-outcome metrics need scikit-learn, which is not installed: {INSTALL_HINT}",
        )


@dataclass(frozen=True, slots=True)
class ClassFigures:
    """One class: how often predicting it was right, and how much of it was found."""

    precision: float
    recall: float
    f1: float
    support: int
    """Outcomes whose ``actual`` is this class."""


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """A classification task's figures over its outcomes."""

    count: int
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    classes: dict[str, ClassFigures]
    roc_auc: float | None = None
    """For two classes with every probability given and both classes present; else None."""
    kind: str = "class"


@dataclass(frozen=True, slots=True)
class NumberMetrics:
    """A regression task's figures over its outcomes."""

    count: int
    mae: float
    rmse: float
    kind: str = "number"


@dataclass(frozen=True, slots=True)
class OutcomeGroup:
    """The tasks of one group of calls (``key``: the ``by`` values, None where absent)."""

    key: tuple[str | None, ...]
    tasks: dict[str, ClassMetrics | NumberMetrics] = field(default_factory=dict)


@dataclass(slots=True)
class _Task:
    labels: list[tuple[str, str, float | None]] = field(default_factory=list)
    numbers: list[tuple[float, float]] = field(default_factory=list)


def outcome_metrics(
    connection: sa.Connection, window: Window, filters: Filters, by: Sequence[str] = ()
) -> list[OutcomeGroup]:
    """The metrics of every task, per group of ``by``, over the outcomes of the window's calls.

    Raises `MissingExtra` when there are outcomes and scikit-learn is not installed.
    """
    groups = [calls.c[name] for name in by]
    query = (
        sa.select(
            *groups,
            outcomes.c.call_id,
            outcomes.c.name,
            outcomes.c.kind,
            outcomes.c.predicted,
            outcomes.c.actual,
            outcomes.c.probability,
            outcomes.c.predicted_value,
            outcomes.c.actual_value,
        )
        .select_from(outcomes.join(calls, calls.c.id == outcomes.c.call_id))
        .where(
            calls.c.started_ms >= window.start_ms,
            calls.c.started_ms < window.end_ms,
            *call_conditions(filters),
        )
        .order_by(outcomes.c.created_ms, outcomes.c.id)
    )
    latest: dict[tuple[str, str], tuple[Any, ...]] = {}
    for row in connection.execute(query):
        values = tuple(row)
        latest[(values[len(by)], values[len(by) + 1])] = values  # the last created wins
    tasks: dict[tuple[str | None, ...], dict[str, _Task]] = {}
    for values in latest.values():
        key = tuple(value or None for value in values[: len(by)])
        _, name, kind, predicted, actual, probability, predicted_value, actual_value = values[
            len(by) :
        ]
        task = tasks.setdefault(key, {}).setdefault(name, _Task())
        # Rows another tool wrote without the pair their kind needs are left out.
        if kind == "class" and predicted and actual:
            task.labels.append((str(predicted), str(actual), _probability(probability)))
        elif kind == "number" and _finite(predicted_value) and _finite(actual_value):
            task.numbers.append((float(predicted_value), float(actual_value)))
    if not tasks:
        return []
    metrics = _sklearn_metrics()
    found: list[OutcomeGroup] = []
    for key in sorted(tasks, key=lambda k: tuple(v or "" for v in k)):
        group = OutcomeGroup(key)
        for name, task in sorted(tasks[key].items()):
            if task.labels:
                group.tasks[name] = _classify(metrics, task.labels)
            elif task.numbers:
                group.tasks[name] = _regress(metrics, task.numbers)
        found.append(group)
    return found


def _sklearn_metrics() -> Any:
    try:
        from sklearn import metrics  # type: ignore[import-untyped]  # noqa: PLC0415  # optional extra
    except ImportError as exc:
        raise MissingExtra() from exc
    return metrics


def _classify(metrics: Any, rows: list[tuple[str, str, float | None]]) -> ClassMetrics:
    predicted = [row[0] for row in rows]
    actual = [row[1] for row in rows]
    labels = sorted(set(predicted) | set(actual))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        actual, predicted, labels=labels, zero_division=0
    )
    macro = metrics.precision_recall_fscore_support(
        actual, predicted, labels=labels, average="macro", zero_division=0
    )
    return ClassMetrics(
        count=len(rows),
        accuracy=float(metrics.accuracy_score(actual, predicted)),
        macro_precision=float(macro[0]),
        macro_recall=float(macro[1]),
        macro_f1=float(macro[2]),
        classes={
            label: ClassFigures(float(p), float(r), float(f), int(s))
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        roc_auc=_roc_auc(metrics, rows, labels),
    )


def _roc_auc(
    metrics: Any, rows: list[tuple[str, str, float | None]], labels: list[str]
) -> float | None:
    if len(labels) != 2 or any(row[2] is None for row in rows):
        return None
    positive = labels[1]
    truth = [row[1] == positive for row in rows]
    if all(truth) or not any(truth):
        return None  # one class only: AUC is undefined
    scores = [row[2] if row[0] == positive else 1.0 - row[2] for row in rows if row[2] is not None]
    return float(metrics.roc_auc_score(truth, scores))


def _regress(metrics: Any, rows: list[tuple[float, float]]) -> NumberMetrics:
    predicted = [row[0] for row in rows]
    actual = [row[1] for row in rows]
    return NumberMetrics(
        count=len(rows),
        mae=float(metrics.mean_absolute_error(actual, predicted)),
        rmse=float(metrics.root_mean_squared_error(actual, predicted)),
    )


def _probability(value: object) -> float | None:
    if isinstance(value, int | float) and 0.0 <= value <= 1.0:
        return float(value)
    return None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
