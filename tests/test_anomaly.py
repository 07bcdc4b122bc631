"""Anomalies against a seasonal baseline, on generated histories written through the store.

The clock is injected (``now`` is an argument); every expected figure is worked out here from
the calls as generated, with numpy and scipy.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from aivitals.model import Call
from aivitals.query import Queries
from aivitals.query.anomaly import MEASURES, Figures, Settings, anomalies, robust_z, score
from aivitals.store.sql import SqlStore
from tests.support.histories import MODELS, RHYTHM, Spike, history

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
DAYS = 8


def write(path: Path, calls: list[Call]) -> SqlStore:
    store = SqlStore.open(path)
    for i in range(0, len(calls), 5000):
        store.write(calls[i : i + 5000], [])
    return store


@pytest.fixture(scope="module")
def stationary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Queries, list[Call]]]:
    calls = history(START, START + timedelta(days=DAYS), seed=7)
    store = write(tmp_path_factory.mktemp("stationary") / "calls.db", calls)
    try:
        yield Queries(store.engine), calls
    finally:
        store.close()


NIGHT = START + timedelta(days=DAYS - 1, hours=3)  # 03:00 to 04:00 on the last day


@pytest.fixture(scope="module")
def spiked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Queries, list[Call]]]:
    spike = Spike("gpt-a", NIGHT, NIGHT + timedelta(hours=1), error_rate=0.4)
    calls = history(START, START + timedelta(days=DAYS), seed=11, spikes=[spike])
    store = write(tmp_path_factory.mktemp("spiked") / "calls.db", calls)
    try:
        yield Queries(store.engine), calls
    finally:
        store.close()


def counts(calls: list[Call], model: str, start: datetime, end: datetime) -> tuple[int, int]:
    inside = [c for c in calls if c.model == model and start <= c.started_at < end]
    return len(inside), sum(1 for c in inside if c.status == "error")


def test_robust_z_is_the_median_and_the_normal_scaled_mad() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(100, 10, 9).tolist()
    median, spread, z = robust_z(130.0, values)
    assert median == pytest.approx(float(np.median(values)))
    assert spread == pytest.approx(float(stats.median_abs_deviation(values, scale="normal")))
    assert z == pytest.approx((130.0 - np.median(values)) / spread)


def test_a_stationary_eight_day_workload_raises_no_anomaly(
    stationary: tuple[Queries, list[Call]],
) -> None:
    queries, calls = stationary
    last_day = START + timedelta(days=DAYS - 1)
    checked = 0
    for hour in range(24):
        now = last_day + timedelta(hours=hour + 1)
        found = anomalies(queries, now)
        assert {(a.group["model"], a.measure) for a in found} == {
            (m, measure) for m in MODELS for measure in MEASURES
        }
        raised = [a for a in found if a.verdict not in ("normal", "not enough data")]
        assert raised == [], (hour, raised)
        # Quiet hours have too few calls for a p95 to say anything; every other figure is read.
        unread = {a.measure for a in found if a.verdict == "not enough data"}
        assert unread <= {"latency_p95"}
        checked += len(found)
        # The request counts and their baseline, from the calls as generated.
        for a in found:
            if a.measure != "requests":
                continue
            model = str(a.group["model"])
            value, _ = counts(calls, model, now - timedelta(hours=1), now)
            refs = [
                counts(calls, model, now - timedelta(days=k, hours=1), now - timedelta(days=k))[0]
                for k in range(1, 8)
            ]
            assert (a.basis, a.references, a.value) == ("daily", 7, value)
            assert a.baseline == pytest.approx(float(np.median(refs)))
            # MAD, at least the Poisson noise of the median count, widened for 7 references.
            mad = float(stats.median_abs_deviation(refs, scale="normal"))
            floor = np.sqrt(max(float(np.median(refs)), 1.0))
            assert a.spread == pytest.approx(max(mad, floor) * np.sqrt(1 + np.pi / 14))
    assert checked == 24 * len(MODELS) * len(MEASURES)


def test_an_error_spike_at_night_is_found_for_that_model_only(
    spiked: tuple[Queries, list[Call]],
) -> None:
    queries, calls = spiked
    now = NIGHT + timedelta(hours=1)
    found = {(a.group["model"], a.measure): a for a in anomalies(queries, now)}
    raised = sorted(key for key, a in found.items() if a.verdict in ("high", "low"))
    assert raised == [("gpt-a", "error_rate")]
    spike = found[("gpt-a", "error_rate")]
    assert spike.verdict == "high"
    calls_now, errors_now = counts(calls, "gpt-a", NIGHT, now)
    assert spike.value == pytest.approx(errors_now / calls_now)
    # The score is the smaller of the robust z and the binomial tail's z: both worked out here.
    refs = [
        counts(calls, "gpt-a", NIGHT - timedelta(days=k), now - timedelta(days=k))
        for k in range(1, 8)
    ]
    rates = [e / n for n, e in refs]
    pooled = (sum(e for _, e in refs) + 1) / (sum(n for n, _ in refs) + 2)
    floor = np.sqrt(pooled * (1 - pooled) / calls_now)
    spread = max(float(stats.median_abs_deviation(rates, scale="normal")), floor)
    spread *= np.sqrt(1 + np.pi / 14)
    robust = min(40.0, (errors_now / calls_now - float(np.median(rates))) / spread)
    chance = float(stats.norm.isf(stats.binom.sf(errors_now - 1, calls_now, pooled)))
    assert spike.z == pytest.approx(min(robust, chance))
    assert spike.z is not None and spike.z >= 4.0
    # An hour later the night is quiet again.
    later = anomalies(queries, now + timedelta(hours=1))
    assert [a for a in later if a.verdict in ("high", "low")] == []


def test_a_busy_afternoon_like_every_afternoon_is_not_an_anomaly(
    spiked: tuple[Queries, list[Call]],
) -> None:
    queries, calls = spiked
    now = START + timedelta(days=DAYS - 1, hours=16)  # 15:00 to 16:00, the daily peak
    found = anomalies(queries, now, ["requests", "spend"])
    assert [a.verdict for a in found] == ["normal"] * 4
    # Against the previous 24 hours instead of the same hour, the afternoon is far out.
    value, _ = counts(calls, "gpt-a", now - timedelta(hours=1), now)
    day = [
        counts(calls, "gpt-a", now - timedelta(hours=h + 1), now - timedelta(hours=h))[0]
        for h in range(1, 25)
    ]
    naive = (value - np.mean(day)) / np.sqrt(np.mean(day))  # Poisson, one level all day
    assert naive > 4.0


def test_too_short_a_history_says_not_enough_data(tmp_path: Path) -> None:
    calls = history(START, START + timedelta(days=3), seed=5, scale=0.2)
    store = write(tmp_path / "calls.db", calls)
    try:
        found = anomalies(Queries(store.engine), START + timedelta(days=3))
    finally:
        store.close()
    assert {a.verdict for a in found} == {"not enough data"}
    # Two days before: two references at most (one for a model with no call in one of them).
    assert max(a.references for a in found) == 2


def test_three_weeks_of_history_compare_the_same_hour_of_the_same_weekday(tmp_path: Path) -> None:
    calls = history(START, START + timedelta(days=22), seed=9, scale=0.1, models=["gpt-a"])
    store = write(tmp_path / "calls.db", calls)
    now = START + timedelta(days=21, hours=14)
    try:
        found = anomalies(
            Queries(store.engine),
            now,
            ["requests"],
            settings=Settings(min_history=3),
        )
    finally:
        store.close()
    assert [(a.basis, a.references) for a in found] == [("weekly", 3)]
    refs = [
        counts(calls, "gpt-a", now - timedelta(weeks=k, hours=1), now - timedelta(weeks=k))[0]
        for k in range(1, 4)
    ]
    assert found[0].reference_values == tuple(float(r) for r in refs)


def false_alarm_rate(runs: int, *, threshold: float = 4.0) -> tuple[float, int]:
    """Share of (hour, model, measure) checks of the last day flagged on stationary histories.

    Hourly figures are drawn as the generator draws them (Poisson calls, 1% errors, lognormal
    latency, $0.002 a successful call), 8 days a run, without the store: the store's part is the
    tests above, and this is the statistic's false-alarm rate.
    """
    rng = np.random.default_rng(2026)
    flagged = checks = 0
    settings = Settings(threshold=threshold)
    for _ in range(runs):
        for _model in MODELS:
            figures: list[Figures] = []
            for hour in range(DAYS * 24):
                n = int(rng.poisson(RHYTHM[hour % 24]))
                errors = int(rng.binomial(n, 0.01))
                latency = rng.lognormal(np.log(800), 0.3, n)
                p50, p95, p99 = (
                    (float(v) for v in np.percentile(latency, [50, 95, 99]))
                    if n
                    else (None, None, None)
                )
                figures.append(Figures(n, errors, 0.002 * (n - errors), p95, p50, p99))
            for hour in range((DAYS - 1) * 24, DAYS * 24):
                refs = [figures[hour - 24 * k] for k in range(1, 8)]
                for measure in MEASURES:
                    found = score(measure, figures[hour], refs, basis="daily", settings=settings)
                    checks += 1
                    flagged += found.verdict in ("high", "low")
    return flagged / checks, checks


def test_the_false_alarm_rate_on_stationary_histories_is_small() -> None:
    rate, checks = false_alarm_rate(100)
    assert checks == 100 * 24 * len(MODELS) * len(MEASURES)
    # docs/drift.md reports this figure: 0.026% of checks (5 of 19,200, seed 2026).
    assert rate < 0.001, rate
