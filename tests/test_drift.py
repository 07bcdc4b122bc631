"""`aivitals.query.drift` on generated histories written through the store (the clock injected:
every window is given, ``NOW`` fixed), and each statistic checked on the raw values drawn.

The statistics are computed here from what `drift_history` drew, not read from the store: KS by
scipy, PSI and the Jensen-Shannon distance by their textbook formulas over the raw baseline's
deciles (numpy), the two-proportion z and Cohen's h by formula, Benjamini-Hochberg by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats

from aivitals.model import Call
from aivitals.query import Filters, Queries, QueryError, Window
from aivitals.query.baseline import trailing
from aivitals.query.drift import Drift, DriftResult
from aivitals.store.baselines import pin
from aivitals.store.rows import epoch_ms
from aivitals.store.sql import SqlStore
from tests.support.drift_history import Change, Drawn, history

NOW = datetime(2026, 11, 10, 14, 0, tzinfo=UTC)
HOUR = Window(NOW - timedelta(hours=1), NOW)
STEP = NOW - timedelta(hours=1)
STEPS = (
    Change(STEP, model="m-a", latency_factor=1.5),
    Change(STEP, feature="chat", output_factor=2.0, prompt_version="v2"),
    Change(STEP, model="m-b", refusal_rate=0.08),
)
PSI_TOLERANCE = 0.03
"""Sketch-based PSI (and JS) against the raw values' over the same deciles: a value within 1% of
a decile may fall on the other side of the cut, nothing more."""


def _open(tmp: pytest.TempPathFactory, name: str) -> SqlStore:
    return SqlStore.open(tmp.mktemp(name) / "aivitals.db")


@pytest.fixture(scope="module")
def stationary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    store = _open(tmp_path_factory, "stationary")
    history(store, now=NOW, seed=11)
    yield store
    store.close()


@pytest.fixture(scope="module")
def stepped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqlStore, Drawn]]:
    store = _open(tmp_path_factory, "stepped")
    drawn = history(store, now=NOW, seed=12, changes=STEPS)
    yield store, drawn
    store.close()


def _drift(store: SqlStore, *by: str, **options: Any) -> Drift:
    return Queries(store.engine).drift(HOUR, Filters(), by, **options)


def _one(found: Drift, signal: str, **group: str) -> DriftResult:
    (result,) = [r for r in found.results if r.signal == signal and r.group == group]
    return result


def test_a_stationary_week_raises_no_drift_in_any_group(stationary: SqlStore) -> None:
    for by in ((), ("model",), ("feature",)):
        found = _drift(stationary, *by)
        assert found.drifted == [], [r.summary for r in found.drifted]
        # And it is a judgement, not a shrug: the signals with data were tested.
        judged = [r for r in found.results if r.signal in ("latency_ms", "refusal_rate")]
        assert judged and all(r.verdict == "stable" for r in judged)


def test_latency_x1_5_for_one_model_is_found_up_for_that_model_only(
    stepped: tuple[SqlStore, Drawn],
) -> None:
    found = _drift(stepped[0], "model")
    up = _one(found, "latency_ms", model="m-a")
    assert up.verdict == "significant" and up.direction == "up"
    assert up.change is not None and 0.35 < up.change < 0.65  # x1.5, read from 1% bins
    assert up.summary.startswith("latency ms p50 ") and "PSI" in up.summary
    assert not _one(found, "latency_ms", model="m-b").drifted


def test_output_tokens_x2_after_a_prompt_version_is_found_for_that_feature_only(
    stepped: tuple[SqlStore, Drawn],
) -> None:
    found = _drift(stepped[0], "feature")
    up = _one(found, "output_tokens", feature="chat")
    assert up.verdict == "significant" and up.direction == "up"
    assert up.baseline is not None and up.current is not None
    assert 1.7 < up.current / up.baseline < 2.3
    assert not _one(found, "output_tokens", feature="search").drifted


def test_refusals_from_1_to_8_percent_are_found_for_that_model_only(
    stepped: tuple[SqlStore, Drawn],
) -> None:
    found = _drift(stepped[0], "model")
    up = _one(found, "refusal_rate", model="m-b")
    assert up.drifted and up.direction == "up"
    assert up.baseline is not None and up.current is not None
    assert up.baseline < 0.02
    assert up.current > 0.05
    assert not _one(found, "refusal_rate", model="m-a").drifted


def test_a_pinned_baseline_compares_with_the_pinned_period(tmp_path: Any) -> None:
    store = SqlStore.open(tmp_path / "aivitals.db")
    try:
        # m-a was 1.5 times slower until six days ago (before an upgrade), as now again.
        slow = Change(NOW - timedelta(days=9), until=NOW - timedelta(days=6), model="m-a",
                      latency_factor=1.5)  # fmt: skip
        now_slow = Change(STEP, model="m-a", latency_factor=1.5)
        history(store, now=NOW, seed=13, changes=(slow, now_slow), days=8)
        since, until = NOW - timedelta(days=8), NOW - timedelta(days=6)
        pin(store.engine, "before-upgrade", epoch_ms(since), epoch_ms(until), now_ms=0)
        against_pin = _drift(store, "model", baseline="pinned:before-upgrade")
        assert against_pin.baseline_windows == (Window(since, until),)
        assert not _one(against_pin, "latency_ms", model="m-a").drifted
        # Two days of calls are more than the raw cap: tokens from a sample, latency never.
        assert _one(against_pin, "output_tokens", model="m-a").sampled
        assert not _one(against_pin, "latency_ms", model="m-a").sampled
        # The same hour against the trailing days (after the upgrade) has drifted up.
        trailing_days = _drift(store, "model", baseline="5d")
        assert _one(trailing_days, "latency_ms", model="m-a").direction == "up"
        assert _one(trailing_days, "latency_ms", model="m-a").verdict == "significant"
        with pytest.raises(QueryError, match="no pinned baseline 'gone'"):
            _drift(store, baseline="pinned:gone")
    finally:
        store.close()


def test_too_few_calls_say_not_enough_data(stationary: SqlStore) -> None:
    five_minutes = Window(NOW - timedelta(minutes=5), NOW)
    found = Queries(stationary.engine).drift(five_minutes, Filters(), ("model",))
    assert found.results and {r.verdict for r in found.results} == {"not enough data"}
    assert all(r.p_value is None and not r.drifted for r in found.results)


def test_bad_signals_and_baselines_are_refused_naming_the_parameter(stationary: SqlStore) -> None:
    queries = Queries(stationary.engine)
    with pytest.raises(QueryError) as caught:
        queries.drift(HOUR, Filters(), (), signals=["colour"])
    assert caught.value.parameter == "signal"
    with pytest.raises(QueryError) as caught:
        queries.drift(HOUR, Filters(), (), baseline="last tuesday")
    assert caught.value.parameter == "baseline"
    with pytest.raises(QueryError) as caught:
        queries.drift(Window(NOW - timedelta(days=2), NOW), Filters(), ())
    assert caught.value.parameter == "window"


# The statistics, against scipy and textbook formulas on the values drawn.


def _in(calls: list[Call], windows: tuple[Window, ...], **fields: str) -> list[Call]:
    return [
        c
        for c in calls
        if any(w.start <= c.started_at < w.end for w in windows)
        and all(getattr(c, k) == v for k, v in fields.items())
    ]


def _ok(calls: list[Call], signal: str) -> np.ndarray[Any, np.dtype[np.float64]]:
    values = [getattr(c, signal) for c in calls if c.status == "ok"]
    return np.asarray([v for v in values if v is not None], np.float64)


def _raw_psi_js(base: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> tuple[float, float]:
    """PSI (shares with 0.5 added) and the base-2 Jensen-Shannon distance over right-closed
    bins cut at the raw baseline's deciles (nearest rank), by their formulas."""
    edges = np.unique(np.quantile(base, np.arange(1, 10) / 10, method="inverted_cdf"))
    b = np.bincount(np.searchsorted(edges, base, side="left"), minlength=edges.size + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=edges.size + 1)
    keep = (b + c) > 0
    b, c = b[keep].astype(float), c[keep].astype(float)
    k = b.size
    p, q = (b + 0.5) / (b.sum() + 0.5 * k), (c + 0.5) / (c.sum() + 0.5 * k)
    psi = float(np.sum((q - p) * np.log(q / p)))
    pp, qq = b / b.sum(), c / c.sum()
    m = (pp + qq) / 2

    def kl(x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / y[nz])))

    return psi, math.sqrt(0.5 * kl(pp, m) + 0.5 * kl(qq, m))


@pytest.mark.parametrize(
    ("signal", "group"),
    [
        ("latency_ms", {"model": "m-a"}),
        ("latency_ms", {"model": "m-b"}),
        ("ttft_ms", {"model": "m-a"}),
        ("output_tokens", {"feature": "chat"}),
        ("output_tokens", {"feature": "search"}),
        ("input_tokens", {"model": "m-b"}),
    ],
)
def test_psi_js_and_ks_match_the_raw_values(
    stepped: tuple[SqlStore, Drawn], signal: str, group: dict[str, str]
) -> None:
    store, drawn = stepped
    found = _drift(store, *group)
    result = _one(found, signal, **group)
    base = _ok(_in(drawn.calls, trailing(HOUR).windows, **group), signal)
    cur = _ok(_in(drawn.calls, (HOUR,), **group), signal)
    assert (result.baseline_n, result.current_n) == (base.size, cur.size)
    psi, js = _raw_psi_js(base, cur)
    assert result.value == pytest.approx(psi, abs=PSI_TOLERANCE)
    assert result.js_distance == pytest.approx(js, abs=PSI_TOLERANCE)
    ks = stats.ks_2samp(base, cur)
    assert result.test == "ks"
    assert result.test_statistic == pytest.approx(float(ks.statistic), rel=1e-12)
    assert result.p_value == pytest.approx(float(ks.pvalue), rel=1e-9)
    # The p50 shown is the sketch's, within 1% of the exact nearest-rank median.
    exact = float(np.quantile(cur, 0.5, method="inverted_cdf"))
    assert result.current == pytest.approx(exact, rel=0.0101)


def test_the_chi_square_test_on_binned_counts_when_samples_are_large(
    stepped: tuple[SqlStore, Drawn], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past KS_MAX calls a side, the bins' counts are tested; lowered here to reach that branch.
    monkeypatch.setattr("aivitals.query.drift.KS_MAX", 10)
    store, drawn = stepped
    result = _one(_drift(store, "model"), "latency_ms", model="m-a")
    base = _ok(_in(drawn.calls, trailing(HOUR).windows, model="m-a"), "latency_ms")
    cur = _ok(_in(drawn.calls, (HOUR,), model="m-a"), "latency_ms")
    edges = np.quantile(base, np.arange(1, 10) / 10, method="inverted_cdf")
    table = np.vstack(
        [np.bincount(np.searchsorted(edges, x, side="left"), minlength=10) for x in (base, cur)]
    ).astype(float)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())  # Pearson's, by its formula
    assert result.test == "chi2"
    assert result.test_statistic == pytest.approx(chi2, rel=0.1)
    assert result.p_value is not None and result.p_value < 1e-6


def test_rates_match_the_two_proportion_z_and_cohens_h_by_formula(
    stepped: tuple[SqlStore, Drawn],
) -> None:
    store, drawn = stepped
    result = _one(_drift(store, "model"), "refusal_rate", model="m-b")
    counts = []
    for windows in (trailing(HOUR).windows, (HOUR,)):
        ids = {c.id for c in _in(drawn.calls, windows, model="m-b")}
        values = [s.value for s in drawn.scores if s.call_id in ids and s.name == "refusal"]
        counts.append((int(sum(values)), len(values)))
    (k1, n1), (k2, n2) = counts
    p1, p2, pooled = k1 / n1, k2 / n2, (k1 + k2) / (n1 + n2)
    z = (p2 - p1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert result.baseline == pytest.approx(p1)
    assert result.current == pytest.approx(p2)
    assert (result.baseline_n, result.current_n) == (n1, n2)
    assert result.test_statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    h = 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1))
    assert result.value == pytest.approx(h, rel=1e-12)


def test_error_rates_by_type_match_the_calls_drawn(stepped: tuple[SqlStore, Drawn]) -> None:
    store, drawn = stepped
    found = _drift(store, "model")
    for kind in ("rate_limit", "timeout"):
        result = _one(found, f"error_rate.{kind}", model="m-a")
        calls = _in(drawn.calls, trailing(HOUR).windows, model="m-a")
        failed = sum(c.error_type == kind for c in calls)
        assert result.baseline == pytest.approx(failed / len(calls))
        assert result.baseline_n == len(calls)


def test_p_values_are_adjusted_together_by_benjamini_hochberg(
    stepped: tuple[SqlStore, Drawn],
) -> None:
    found = _drift(stepped[0], "model")
    tested = [r for r in found.results if r.p_value is not None]
    ps = np.asarray([r.p_value for r in tested])
    m = ps.size
    order = np.argsort(ps)
    scaled = ps[order] * m / np.arange(1, m + 1)
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    assert [r.p_adjusted for r in tested] == pytest.approx(adjusted.tolist(), rel=1e-12)
