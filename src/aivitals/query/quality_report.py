"""One quality answer per group: the evaluators' rates, the mean scores and the outcome metrics.

What ``aivitals quality`` prints and ``GET /api/v1/quality/groups`` answers, built once here.
Without scikit-learn the rates and scores are still answered, and ``outcomes_unavailable`` says
what to install.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aivitals.query.filters import Filters
from aivitals.query.outcomes import MissingExtra, OutcomeGroup
from aivitals.query.quality import QualityGroup
from aivitals.query.window import Window

if TYPE_CHECKING:
    from aivitals.query.queries import Queries


@dataclass(frozen=True, slots=True)
class QualityReport:
    """The groups (each a plain dict, as JSON shows it) and the parts they came from."""

    by: tuple[str, ...]
    groups: list[dict[str, Any]]
    rated: list[QualityGroup] = field(default_factory=list)
    labelled: list[OutcomeGroup] = field(default_factory=list)
    outcomes_unavailable: str | None = None
    skipped_rows: int = 0


def quality_report(
    queries: Queries, window: Window, filters: Filters, by: Sequence[str]
) -> QualityReport:
    """Rates, scores and outcome metrics of the window's calls, per group of ``by``."""
    rated = queries.quality(window, filters, by)
    missing: str | None = None
    try:
        labelled = queries.outcomes(window, filters, by)
    except MissingExtra as exc:
        labelled, missing = [], exc.problem
    names = tuple(by)
    by_key: dict[tuple[str | None, ...], dict[str, Any]] = {}

    def entry(key: tuple[str | None, ...]) -> dict[str, Any]:
        group = dict(zip(names, key, strict=True))
        return by_key.setdefault(key, {"group": group, "rates": {}, "scores": {}, "outcomes": {}})

    for rates in rated:
        found = entry(rates.key)
        found["rates"] = {n: {"rate": r.rate, "count": r.count} for n, r in rates.rates.items()}
        found["scores"] = {n: {"mean": s.rate, "count": s.count} for n, s in rates.scores.items()}
    for outcome in labelled:
        entry(outcome.key)["outcomes"] = outcome.tasks
    ordered = sorted(by_key, key=lambda key: tuple(value or "" for value in key))
    return QualityReport(
        by=names,
        groups=[by_key[key] for key in ordered],
        rated=rated,
        labelled=labelled,
        outcomes_unavailable=missing,
        skipped_rows=sum(group.skipped_rows for group in rated),
    )
