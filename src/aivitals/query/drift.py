"""Drift: a current window's calls against their baseline, signal by signal, group by group.

Distributions (latency, TTFT, input and output tokens, cost per call: `baseline.DISTRIBUTIONS`)
are compared over ten bins cut at the baseline's deciles (fewer when values repeat, as token
counts do), each bin a run of the sketches' 1% bins, so the same figures come from rollups or
raw calls:

- PSI, the population stability index, sum of (c - b) ln(c / b) over the bins' shares, each share
  (count + 0.5) / (n + 0.5 k) so that an empty bin does not make it infinite. The usual bands:
  below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 significant;
- the Jensen-Shannon distance (`scipy.spatial.distance.jensenshannon`, base 2: 0 to 1);
- a two-sample test: Kolmogorov-Smirnov (`scipy.stats.ks_2samp`) on the raw values when both
  sides hold at most `KS_MAX` calls, every one read; otherwise a chi-square test of the two
  rows of bin counts (`scipy.stats.chi2_contingency`).

Rates (errors, errors by type, and the evaluators' refusal, empty, truncated, invalid-JSON and
PII-leak rates) get a two-proportion z-test (pooled) and Cohen's h as their size,
``2 asin(sqrt(p2)) - 2 asin(sqrt(p1))``: below 0.05 stable, 0.05 to 0.2 moderate, above 0.2
significant (a 1% error rate doubling is h = 0.08, 1% to 8% is 0.37).

The p-values of one answer are adjusted together (Benjamini-Hochberg,
`scipy.stats.false_discovery_control`): a drift answer asks many questions at once. A signal has
drifted when its size is past its stable band AND its adjusted p-value is below `ALPHA`; so a
large sample does not flag a trivial change, nor a small one a noisy one. With fewer than
``min_samples`` calls (or scores) on either side, the verdict is "not enough data".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

from aivitals.query.baseline import (
    COST_SCALE,
    DISTRIBUTIONS,
    SKETCHED,
    Profile,
    Reference,
    profiles,
)
from aivitals.query.errors import QueryError
from aivitals.query.filters import Filters
from aivitals.query.window import Window, parse_since
from aivitals.store.sketch import Sketch

if TYPE_CHECKING:
    import sqlalchemy as sa

    from aivitals.query.queries import Queries

Verdict = Literal["stable", "moderate", "significant", "not enough data"]
Direction = Literal["up", "down", "flat"]

MIN_SAMPLES = 200
"""Calls (or scores) a side below which a signal says "not enough data"."""
ALPHA = 0.01
"""Adjusted p-value below which a change is not put down to chance."""
KS_MAX = 5000
"""Both sides at most this many calls, all read: the KS test on raw values, not binned counts."""
BINS = 10
PSI_BANDS = (0.1, 0.25)
H_BANDS = (0.05, 0.2)
_PSEUDO = 0.5

RATES = (
    "error_rate",
    "refusal_rate",
    "empty_rate",
    "truncated_rate",
    "invalid_json_rate",
    "pii_leak_rate",
)
"""The rate signals; ``error_rate`` brings ``error_rate.<type>`` for each error type seen."""
SIGNALS = (*DISTRIBUTIONS, *RATES)
_SCORE_OF = {
    "refusal_rate": ("refusal", False),
    "empty_rate": ("empty", False),
    "truncated_rate": ("truncated", False),
    "invalid_json_rate": ("json_valid", True),
    "pii_leak_rate": ("pii_leak", False),
}
_LABELS = {
    "latency_ms": "latency ms",
    "ttft_ms": "TTFT ms",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "cost_usd": "cost per call USD",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftResult:
    """One signal of one group, current window against baseline.

    For distributions ``baseline``/``current`` are the p50 (``*_p95`` the p95), ``statistic`` is
    ``psi``; for rates they are the rates and ``statistic`` is ``cohen_h``.
    """

    signal: str
    kind: Literal["distribution", "rate"]
    group: dict[str, str | None]
    baseline: float | None
    current: float | None
    baseline_n: int
    current_n: int
    baseline_p95: float | None = None
    current_p95: float | None = None
    statistic: Literal["psi", "cohen_h"]
    value: float | None
    """PSI, or Cohen's h (signed: positive when the rate rose)."""
    js_distance: float | None = None
    test: Literal["ks", "chi2", "z"] | None = None
    test_statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    direction: Direction = "flat"
    change: float | None = None
    """current / baseline - 1 (p50 for distributions, the rate for rates); None from zero."""
    verdict: Verdict
    sampled: bool = False
    """Tokens and cost only: a side's raw calls were more than `baseline.RAW_CAP`, so its
    distribution is of a sample spread evenly in time (latency and TTFT never are)."""
    summary: str = ""
    """One line: "output tokens p50 182 -> 401, PSI 0.61 (significant)"."""

    @property
    def drifted(self) -> bool:
        return self.verdict in ("moderate", "significant")


@dataclass(frozen=True, slots=True, kw_only=True)
class Drift:
    """Every signal of every group, and what they were compared over."""

    window: Window
    baseline: str
    baseline_windows: tuple[Window, ...]
    by: tuple[str, ...]
    min_samples: int
    alpha: float
    results: list[DriftResult] = field(default_factory=list)

    @property
    def drifted(self) -> list[DriftResult]:
        return [result for result in self.results if result.drifted]


def current_window(text: str, *, now: datetime) -> Window:
    """The current window from ``30m``, ``1h``, ``24h`` (ending ``now``), its errors naming
    ``window``."""
    try:
        return parse_since(text, now=now)
    except QueryError as exc:
        raise QueryError("window", exc.problem) from None


def check_signals(names: Sequence[str] | None) -> tuple[str, ...]:
    """The signals asked for, checked (``error_rate.<type>`` names one error type)."""
    if names is None:
        return SIGNALS
    for name in names:
        if name not in SIGNALS and not name.startswith("error_rate."):
            raise QueryError("signal", f"unknown signal {name!r}; use one of {', '.join(SIGNALS)}")
    return tuple(dict.fromkeys(names))


def compare_drift(
    connection: sa.Connection,
    window: Window,
    reference: Reference,
    filters: Filters,
    by: Sequence[str] = (),
    *,
    signals: Sequence[str] | None = None,
    min_samples: int = MIN_SAMPLES,
    alpha: float = ALPHA,
) -> Drift:
    """The current ``window`` against ``reference``, per group of ``by`` (module docstring)."""
    wanted = check_signals(signals)
    if min_samples < 2:
        raise QueryError("min_samples", f"must be at least 2, not {min_samples}")
    scores = any(name in _SCORE_OF for name in wanted)
    base = profiles(connection, reference, filters, by, scores=scores)
    current = profiles(connection, (window,), filters, by, scores=scores)
    results: list[DriftResult] = []
    for key in sorted(set(base) | set(current), key=lambda k: tuple(v or "" for v in k)):
        group = dict(zip(by, key, strict=True))
        b, c = base.get(key, Profile()), current.get(key, Profile())
        for name in wanted:
            if name in DISTRIBUTIONS:
                results.append(_distribution(name, group, b, c, min_samples))
            elif name == "error_rate":
                results.append(_rate(name, group, _errors(b), _errors(c), min_samples))
                for kind in sorted(set(b.errors) | set(c.errors)):
                    typed = f"error_rate.{kind}"
                    if typed not in wanted:
                        results.append(
                            _rate(typed, group, _errors(b, kind), _errors(c, kind), min_samples)
                        )
            elif name.startswith("error_rate."):
                kind = name.removeprefix("error_rate.")
                results.append(_rate(name, group, _errors(b, kind), _errors(c, kind), min_samples))
            else:
                results.append(_rate(name, group, _scored(b, name), _scored(c, name), min_samples))
    return Drift(
        window=window,
        baseline=reference.label,
        baseline_windows=reference.windows,
        by=tuple(by),
        min_samples=min_samples,
        alpha=alpha,
        results=_judged(results, alpha),
    )


def drift_signals(
    queries: Queries,
    window: Window,
    baseline: Reference | str = "7d",
    by: Sequence[str] = (),
    signals: Sequence[str] | None = None,
    *,
    filters: Filters | None = None,
    min_samples: int = MIN_SAMPLES,
) -> list[DriftResult]:
    """Every signal's drift per group: what the alert engine's ``drift`` rules read.

    ``baseline`` is a `Reference`, ``"7d"`` (trailing days, same hours) or ``"pinned:NAME"``.
    Filter on ``result.drifted`` (moderate or significant) or ``result.verdict``.
    """
    found = queries.drift(
        window,
        filters or Filters(),
        by,
        baseline=baseline,
        signals=signals,
        min_samples=min_samples,
    )
    return found.results


Counts = tuple[int, int]
"""(events, trials)."""


def _errors(profile: Profile, kind: str | None = None) -> Counts:
    failed = sum(profile.errors.values()) if kind is None else profile.errors.get(kind, 0)
    return failed, profile.calls


def _scored(profile: Profile, signal: str) -> Counts:
    score, opposite = _SCORE_OF[signal]
    total, count = profile.scores.get(score, (0.0, 0))
    events = round(total)
    return (count - events if opposite else events), count


def _rate(
    signal: str, group: dict[str, str | None], b: Counts, c: Counts, min_samples: int
) -> DriftResult:
    (k1, n1), (k2, n2) = b, c
    p1 = k1 / n1 if n1 else None
    p2 = k2 / n2 if n2 else None
    common = {
        "signal": signal,
        "kind": "rate",
        "group": group,
        "baseline": p1,
        "current": p2,
        "baseline_n": n1,
        "current_n": n2,
        "statistic": "cohen_h",
    }
    if p1 is None or p2 is None or min(n1, n2) < min_samples:
        return DriftResult(
            **common,  # type: ignore[arg-type]  # the keys above are fields
            value=None,
            verdict="not enough data",
            summary=f"{_label(signal)}: not enough data ({n1:,} baseline, {n2:,} current)",
        )
    h = 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))
    z, p = two_proportion_z(k1, n1, k2, n2)
    return DriftResult(
        **common,  # type: ignore[arg-type]  # the keys above are fields
        value=h,
        test="z",
        test_statistic=z,
        p_value=p,
        direction="up" if p2 > p1 else "down" if p2 < p1 else "flat",
        change=p2 / p1 - 1 if p1 else None,
        verdict="stable",
    )


def two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """The pooled two-proportion z statistic of k2/n2 against k1/n1, and its two-sided p."""
    pooled = (k1 + k2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 0.0, 1.0
    z = (k2 / n2 - k1 / n1) / spread
    return z, float(2 * stats.norm.sf(abs(z)))


def _distribution(
    signal: str, group: dict[str, str | None], b: Profile, c: Profile, min_samples: int
) -> DriftResult:
    base, cur = b.distribution(signal), c.distribution(signal)
    n1, n2 = base.count, cur.count
    unit = 1e-6 if signal == "cost_usd" else 1.0  # costs are binned in micro-dollars

    def q(sketch: Sketch, at: float) -> float | None:
        value = sketch.quantile(at)
        return None if value is None else value * unit

    common = {
        "signal": signal,
        "kind": "distribution",
        "group": group,
        "baseline": q(base, 0.5),
        "current": q(cur, 0.5),
        "baseline_n": n1,
        "current_n": n2,
        "baseline_p95": q(base, 0.95),
        "current_p95": q(cur, 0.95),
        "statistic": "psi",
        "sampled": signal not in SKETCHED and (b.sampled or c.sampled),
    }
    if min(n1, n2) < min_samples:
        return DriftResult(
            **common,  # type: ignore[arg-type]  # the keys above are fields
            value=None,
            verdict="not enough data",
            summary=f"{_label(signal)}: not enough data ({n1:,} baseline, {n2:,} current)",
        )
    before, after = coarse_bins(base, cur)
    psi_value = psi(before, after)
    js = float(distance.jensenshannon(before / before.sum(), after / after.sum(), base=2))
    test: Literal["ks", "chi2"]
    if not b.sampled and not c.sampled and max(n1, n2) <= KS_MAX:
        found = stats.ks_2samp(b.values(signal), c.values(signal))
        test, statistic, p = "ks", float(found.statistic), float(found.pvalue)
    else:
        test, statistic, p = "chi2", *_chi2(before, after)
    p50_1, p50_2 = common["baseline"], common["current"]
    p95_1, p95_2 = common["baseline_p95"], common["current_p95"]
    assert isinstance(p50_1, float) and isinstance(p50_2, float)  # both sides have values
    assert isinstance(p95_1, float) and isinstance(p95_2, float)
    first, second = (p50_1, p50_2) if p50_1 != p50_2 else (p95_1, p95_2)
    return DriftResult(
        **common,  # type: ignore[arg-type]  # the keys above are fields
        value=psi_value,
        js_distance=js,
        test=test,
        test_statistic=statistic,
        p_value=p,
        direction="up" if second > first else "down" if second < first else "flat",
        change=p50_2 / p50_1 - 1 if p50_1 else None,
        verdict="stable",
    )


def coarse_bins(
    base: Sketch, current: Sketch, bins: int = BINS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Both sketches' counts in the bins cut at the baseline's ``bins``-quantiles.

    The cuts fall between sketch bins (1% wide), so a value is in the same bin whichever side
    it is on; repeated values (token counts) merge bins rather than split one value.
    """
    low = min(_first(base), _first(current))
    high = max(_last(base), _last(current))
    width = max(high - low + 1, 0)

    def dense(sketch: Sketch) -> npt.NDArray[np.float64]:
        cells = np.zeros(width + 1)
        cells[0] = sketch.zeros  # the zero bin first: below every other value
        if sketch.counts.size:
            start = sketch.offset - low + 1
            cells[start : start + sketch.counts.size] += sketch.counts
        return cells

    b, c = dense(base), dense(current)
    cumulative = np.cumsum(b) / b.sum()
    # Each cut closes a bin after the cell where the baseline's cumulative share reaches it.
    cuts = np.searchsorted(cumulative, np.arange(1, bins) / bins - 1e-12, side="left")
    starts = np.unique(np.concatenate([[0], cuts + 1]))
    starts = starts[starts < b.size]
    return np.add.reduceat(b, starts), np.add.reduceat(c, starts)


def _first(sketch: Sketch) -> int:
    return sketch.offset if sketch.counts.size else 2**62


def _last(sketch: Sketch) -> int:
    return sketch.offset + sketch.counts.size - 1 if sketch.counts.size else -(2**62)


def psi(before: npt.NDArray[np.float64], after: npt.NDArray[np.float64]) -> float:
    """The population stability index of two rows of bin counts (shares with 0.5 added)."""
    k = before.size
    p = (before + _PSEUDO) / (before.sum() + _PSEUDO * k)
    q = (after + _PSEUDO) / (after.sum() + _PSEUDO * k)
    return float(np.sum((q - p) * np.log(q / p)))


def _chi2(before: npt.NDArray[np.float64], after: npt.NDArray[np.float64]) -> tuple[float, float]:
    table = np.vstack([before, after])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    found = stats.chi2_contingency(table, correction=False)
    return float(found.statistic), float(found.pvalue)


def _judged(results: list[DriftResult], alpha: float) -> list[DriftResult]:
    """Adjusted p-values, verdicts and summaries."""
    tested = [i for i, r in enumerate(results) if r.p_value is not None]
    adjusted = (
        stats.false_discovery_control([results[i].p_value for i in tested]).tolist()
        if tested
        else []
    )
    out = list(results)
    for i, p in zip(tested, adjusted, strict=True):
        r = results[i]
        size = abs(r.value or 0.0)
        low, high = PSI_BANDS if r.kind == "distribution" else H_BANDS
        verdict: Verdict = "stable"
        if size >= low and p < alpha:
            verdict = "significant" if size > high else "moderate"
        judged = replace(r, p_adjusted=float(p), verdict=verdict)
        out[i] = replace(judged, summary=_summary(judged))
    return out


def _summary(r: DriftResult) -> str:
    if r.kind == "distribution":
        shown = f"{_label(r.signal)} p50 {_figure(r.baseline)} -> {_figure(r.current)}"
        return f"{shown}, PSI {r.value:.2f} ({r.verdict})"
    p = r.p_adjusted if r.p_adjusted is not None else 1.0
    shown_p = "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    return (
        f"{_label(r.signal)} {_percent(r.baseline)} -> {_percent(r.current)}, "
        f"h {r.value:+.2f}, {shown_p} ({r.verdict})"
    )


def _label(signal: str) -> str:
    if signal in _LABELS:
        return _LABELS[signal]
    if signal.startswith("error_rate."):
        return f"{signal.removeprefix('error_rate.')} error rate"
    return signal.replace("_", " ")


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) < 1:
        return f"{value:.3g}"
    return f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


__all__ = [
    "ALPHA",
    "COST_SCALE",
    "MIN_SAMPLES",
    "SIGNALS",
    "Drift",
    "DriftResult",
    "check_signals",
    "coarse_bins",
    "compare_drift",
    "current_window",
    "drift_signals",
    "psi",
    "two_proportion_z",
]
