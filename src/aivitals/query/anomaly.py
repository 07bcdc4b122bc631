"""Anomalies: a window's figure against the same hour of the same weekday in past weeks.

The current window (default the last hour, ending now) is compared with reference windows of the
same length shifted back by whole weeks (same hour of day and day of week, `weeks` of them); when
fewer than `min_weeks` of those fall inside the group's history, by whole days instead (same hour
of day, `days` of them), so a store a week old still has a baseline. Fewer than `min_history`
reference values say "not enough data" and never alert.

The spread is robust: the median of the references and their median absolute deviation scaled
by 1.4826 (the MAD of a normal sample estimates its standard deviation so), so one odd hour in
the history does not widen the band for good. Because the references are the same hour, a busy
afternoon is compared with other afternoons and a quiet night with other nights.

For counts and rates, a robust z alone over-reacts where volume is small (at night two errors in
twenty calls are 10%, and the MAD of mostly-zero error rates is 0), so their score is the
smaller of the robust z and the z of chance at this volume: the Poisson tail of the request count
given the median, the binomial tail of the error count given the references' pooled error rate.
An anomaly must be both outside the usual spread and more than the luck of a few calls.

Hand-written rather than a forecasting library (Prophet, statsmodels' STL): a median and a MAD
over at most a dozen reference windows need no model fit, answer in microseconds from the
rollups, and say plainly why they fired; a fitted model would add a heavy dependency, minutes of
fitting per series and results that are harder to explain to whoever is paged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Literal

import numpy as np

from aivitals.query.filters import Filters
from aivitals.query.queries import Queries
from aivitals.query.window import Window

Measure = Literal["requests", "error_rate", "spend", "latency_p95"]
MEASURES: tuple[Measure, ...] = ("requests", "error_rate", "spend", "latency_p95")
Verdict = Literal["high", "low", "normal", "not enough data"]

GroupKey = tuple[tuple[str, str | None], ...]
MAD_SCALE = 1 / NormalDist().inv_cdf(0.75)
"""1 / Φ⁻¹(3/4) = 1.4826...: the MAD of a normal sample times this estimates its standard
deviation."""
RELATIVE_FLOOR = 0.01
"""The spread of spend and latency is at least 1% of their median: sketches' p95 is within 1%,
and a history of identical hours would otherwise make any difference infinite. Spend's is also
at least its median over the square root of the current window's calls (count noise)."""
P50_TO_P99 = NormalDist().inv_cdf(0.99)
P95_NOISE = math.sqrt(0.95 * 0.05) / NormalDist().pdf(NormalDist().inv_cdf(0.95))
MIN_CALLS_P95 = 50
"""Below this many calls in the window a p95 is one of its few slowest calls (the largest of
fewer than 20): no anomaly is read from it ("not enough data")."""
Z_CAP = 40.0
"""Scores are capped here (a tail probability of 0 is an infinite z; JSON has no infinity)."""


@dataclass(frozen=True, slots=True)
class Figures:
    """One window's figures for one group."""

    calls: int
    errors: int
    cost_usd: float
    latency_p95_ms: float | None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None

    def value(self, measure: Measure) -> float | None:
        """The measure's value; None when it has none (a rate or latency without calls)."""
        if measure == "requests":
            return float(self.calls)
        if measure == "spend":
            return self.cost_usd
        if measure == "error_rate":
            return self.errors / self.calls if self.calls else None
        return self.latency_p95_ms


_EMPTY = Figures(0, 0, 0.0, None)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One measure of one group now against its seasonal baseline.

    ``z`` is signed (above the baseline positive); ``basis`` says whether the references were
    the same hour of past weeks (``weekly``) or of past days (``daily``).
    """

    measure: Measure
    group: dict[str, str | None]
    value: float | None
    baseline: float | None
    spread: float | None
    z: float | None
    references: int
    basis: Literal["weekly", "daily"]
    verdict: Verdict
    reference_values: tuple[float, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How the baseline is drawn and when a score is an anomaly."""

    window: timedelta = timedelta(hours=1)
    weeks: int = 4
    min_weeks: int = 3
    days: int = 7
    min_history: int = 5
    threshold: float = 4.0


def robust_z(
    value: float, references: Sequence[float], *, floor: float = 0.0
) -> tuple[float, float, float]:
    """(median, spread, z) of ``value`` against ``references``: spread = 1.4826 x MAD, at least
    ``floor`` and never 0."""
    ref = np.asarray(references, dtype=float)
    median = float(np.median(ref))
    spread = max(MAD_SCALE * float(np.median(np.abs(ref - median))), floor, 1e-12)
    return median, spread, _cap((value - median) / spread)


def _cap(z: float) -> float:
    return max(-Z_CAP, min(Z_CAP, z))


def _tail_z(upper: float, lower: float, up: bool) -> float:
    """A signed z from the upper (``up``) or lower tail probability."""
    from scipy import stats  # noqa: PLC0415  # a second to import; only when scoring

    p = upper if up else lower
    z = float(stats.norm.isf(max(p, 1e-300)))
    return _cap(z if up else -z)


def score(
    measure: Measure,
    current: Figures,
    references: Sequence[Figures],
    *,
    group: dict[str, str | None] | None = None,
    basis: Literal["weekly", "daily"] = "weekly",
    settings: Settings | None = None,
) -> Anomaly:
    """``current`` against ``references`` (windows inside the group's history) for ``measure``."""
    from scipy import stats  # noqa: PLC0415  # a second to import; only when scoring

    settings = settings or Settings()
    value = current.value(measure)
    values = [v for v in (r.value(measure) for r in references) if v is not None]
    kept = tuple(values)
    if (
        value is None
        or len(values) < settings.min_history
        or (measure == "latency_p95" and current.calls < MIN_CALLS_P95)
    ):
        return Anomaly(
            measure,
            group or {},
            value,
            None,
            None,
            None,
            len(values),
            basis,
            "not enough data",
            kept,
        )
    floor = _floor(measure, current, references)
    median, spread, _ = robust_z(value, values, floor=floor)
    # The median of n references is itself uncertain: the variance of value - median is about
    # spread^2 x (1 + pi / 2n) (the median's asymptotic variance), so the band widens for few.
    inflation = math.sqrt(1 + math.pi / (2 * len(values)))
    spread *= inflation
    z = _cap((value - median) / spread)
    if measure == "latency_p95" and value > 0 and median > 0:
        # A p95 of a few calls is skewed to the right: scored on a log scale, where it is not.
        logs = [math.log(v) for v in values if v > 0]
        _, log_spread, _ = robust_z(math.log(value), logs, floor=floor / median)
        z = _cap((math.log(value) - float(np.median(logs))) / (log_spread * inflation))
    if measure == "requests":
        mean = max(median, 0.5)
        chance = _tail_z(
            float(stats.poisson.sf(current.calls - 1, mean)),
            float(stats.poisson.cdf(current.calls, mean)),
            value >= median,
        )
        z = _smaller(z, chance)
    elif measure == "spend" and median > 0:
        # Spend is calls at about the usual price each: the Poisson tail of that many calls.
        priced = [r.cost_usd / r.calls for r in references if r.calls and r.cost_usd > 0]
        each = float(np.median(priced)) if priced else 0.0
        if each > 0:
            k = round(value / each)
            mean = median / each
            chance = _tail_z(
                float(stats.poisson.sf(k - 1, mean)),
                float(stats.poisson.cdf(k, mean)),
                value >= median,
            )
            z = _smaller(z, chance)
    elif measure == "error_rate":
        calls = sum(r.calls for r in references)
        errors = sum(r.errors for r in references)
        # Laplace's rule: a history without one error still allows some.
        pooled = (errors + 1) / (calls + 2)
        chance = _tail_z(
            float(stats.binom.sf(current.errors - 1, current.calls, pooled)),
            float(stats.binom.cdf(current.errors, current.calls, pooled)),
            value >= median,
        )
        z = _smaller(z, chance)
    verdict: Verdict = "normal"
    if z >= settings.threshold:
        verdict = "high"
    elif z <= -settings.threshold:
        verdict = "low"
    return Anomaly(
        measure, group or {}, value, median, spread, z, len(values), basis, verdict, kept
    )


def _floor(measure: Measure, current: Figures, references: Sequence[Figures]) -> float:
    """The least spread the sampling noise of the current window's calls alone would give.

    The MAD of a handful of reference hours is small by chance often enough to make ordinary
    hours look extraordinary; no band is narrower than the window's own count noise.
    """
    n = max(current.calls, 1)
    if measure == "requests":
        return math.sqrt(max(float(np.median([r.calls for r in references])), 1.0))
    if measure == "error_rate":
        calls = sum(r.calls for r in references)
        p = (sum(r.errors for r in references) + 1) / (calls + 2)
        return math.sqrt(p * (1 - p) / n)
    if measure == "spend":
        # A sum over n calls varies by about 1/sqrt(n) of itself from the count alone.
        level = float(np.median([r.cost_usd for r in references]))
        return max(RELATIVE_FLOOR * level, level / math.sqrt(n))
    # The p95 of n calls: sd = sigma x sqrt(q(1 - q) / n) / phi(z_q) for a normal of spread
    # sigma, read from the references' p50 to p99 (2.326 sigma apart for a normal).
    widths = [
        (r.latency_p99_ms - r.latency_p50_ms) / P50_TO_P99
        for r in references
        if r.latency_p99_ms is not None and r.latency_p50_ms is not None
    ]
    p95 = [r.latency_p95_ms for r in references if r.latency_p95_ms is not None]
    sigma = float(np.median(widths)) if widths else 0.0
    return max(RELATIVE_FLOOR * float(np.median(p95)), sigma * P95_NOISE / math.sqrt(n))


def _smaller(a: float, b: float) -> float:
    """The score nearer 0, or 0 when the two disagree on the direction."""
    if (a >= 0) != (b >= 0):
        return 0.0
    return a if abs(a) <= abs(b) else b


def _figures(
    queries: Queries, window: Window, filters: Filters, by: Sequence[str]
) -> dict[GroupKey, Figures]:
    if not by:
        m = queries.summary(window, filters, quality=False)
        if not m.calls:
            return {}
        return {
            (): Figures(
                m.calls,
                m.errors,
                float(m.total_cost_usd),
                m.latency_p95_ms,
                m.latency_p50_ms,
                m.latency_p99_ms,
            )
        }
    return {
        tuple((f, row.group.get(f)) for f in by): Figures(
            row.calls,
            row.errors,
            float(row.total_cost_usd),
            row.latency_p95_ms,
            row.latency_p50_ms,
            row.latency_p99_ms,
        )
        for row in queries.breakdown(window, filters, by, quality=False)
        if row.calls
    }


def anomalies(
    queries: Queries,
    now: datetime,
    measures: Sequence[Measure] = MEASURES,
    *,
    filters: Filters | None = None,
    by: Sequence[str] = ("model",),
    settings: Settings | None = None,
) -> list[Anomaly]:
    """Every measure of every group with calls in the current window (or in its references),
    scored against its seasonal baseline; ``now`` is the window's end (injected, never read)."""
    settings = settings or Settings()
    filters = filters or Filters()
    span = settings.window

    def at(shift: timedelta) -> Window:
        return Window(start=now - shift - span, end=now - shift)

    current = _figures(queries, at(timedelta(0)), filters, by)
    weekly = [
        _figures(queries, at(timedelta(weeks=k)), filters, by) for k in range(1, settings.weeks + 1)
    ]
    daily = [
        _figures(queries, at(timedelta(days=k)), filters, by) for k in range(1, settings.days + 1)
    ]
    groups = sorted({*current, *(g for refs in (*weekly, *daily) for g in refs)}, key=_order)
    found: list[Anomaly] = []
    for group in groups:
        in_weeks = _inside(weekly, group)
        basis: Literal["weekly", "daily"] = (
            "weekly" if len(in_weeks) >= settings.min_weeks else "daily"
        )
        refs = in_weeks if basis == "weekly" else _inside(daily, group)
        now_figures = current.get(group, _EMPTY)
        for measure in measures:
            found.append(
                score(measure, now_figures, refs, group=dict(group), basis=basis, settings=settings)
            )
    return found


def _inside(refs: Sequence[dict[GroupKey, Figures]], group: GroupKey) -> list[Figures]:
    """The references inside the group's history, newest first.

    A reference counts once the group has calls in it or in an older one: before its first
    call the group did not exist, and its zero requests then are no baseline.
    """
    oldest = max((i for i, r in enumerate(refs) if group in r), default=-1)
    return [refs[i].get(group, _EMPTY) for i in range(oldest + 1)]


def _order(group: GroupKey) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, v or "") for _, v in group)
