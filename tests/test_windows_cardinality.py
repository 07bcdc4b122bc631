"""Live windows keep at most so many (provider, model, feature, team) keys, whatever arrives.

Per key and minute the windows hold an aggregate with quantile sketches (about 2.5 KB when quiet),
so 10,000 distinct models meant 10,000 keys in every minute, day and month: memory without end.
The default cap (1,000 keys; 200 models, 500 features, 200 teams, 50 providers) is docs/metrics.md's.
"""

from __future__ import annotations

import gc
import tracemalloc
from decimal import Decimal

import aivitals
from aivitals.cardinality import OTHER, LabelLimits
from aivitals.model import Call, Score
from aivitals.sdk.runtime import reset
from aivitals.windows import LiveWindows

from .support.helpers import at, make_call

T0 = 1_790_000_000.0
DISTINCT = 10_000


def distinct_call(i: int, started: float, **overrides: object) -> Call:
    fields: dict[str, object] = {
        "model": f"model-{i:05d}",
        "feature": f"feature-{i:05d}",
        "team": f"team-{i:05d}",
        "cost_usd": Decimal("0.001"),
        "started_at": at(started),
        **overrides,
    }
    return make_call(**fields)


def keys_held(windows: LiveWindows) -> int:
    """Keys over every minute kept and the day and month: what the memory is made of."""
    return len(windows.keys(minutes=60)) + len(windows.keys(period="month"))


def test_ten_thousand_models_keep_the_default_cap() -> None:
    now = [T0]
    windows = LiveWindows(clock=lambda: now[0])
    for i in range(DISTINCT):
        windows.on_call(distinct_call(i, T0 - 10))
    keys = windows.keys(minutes=1)
    assert len(keys) <= 1_000 + 1
    models = {key[1] for key in keys}
    assert len(models) == 201 and "model-00000" in models and OTHER in models
    # Folded, not lost: the totals still hold every call.
    view = windows.read(minutes=1)
    assert view.calls == DISTINCT
    assert view.cost_usd == Decimal("0.001") * DISTINCT
    assert windows.read(minutes=1, model=OTHER).calls == DISTINCT - 200
    assert windows.read(minutes=1, model="model-00007").calls == 1
    folds = windows.caps[0].folds
    assert folds["model"] == DISTINCT - 200
    # The next minute folds the same way, and so do the day and month it is folded into.
    now[0] = T0 + 60
    for i in range(DISTINCT):
        windows.on_call(distinct_call(i, T0 + 50))
    now[0] = T0 + 120
    assert len(windows.keys(period="today")) <= 1_000 + 1
    assert windows.read(period="today").calls == 2 * DISTINCT


def test_distinct_teams_and_features_alone_are_capped() -> None:
    windows = LiveWindows(clock=lambda: T0, limits=LabelLimits(features=5, teams=2, live_keys=8))
    for i in range(DISTINCT):
        windows.on_call(distinct_call(i, T0 - 10, model="gpt-4o-mini"))
    keys = windows.keys(minutes=1)
    assert {key[3] for key in keys} <= {"team-00000", "team-00001", OTHER}
    assert len(keys) <= 8 + 1
    assert windows.read(minutes=1).calls == DISTINCT
    assert windows.caps[0].folds["team"] == DISTINCT - 2


def test_quality_keys_are_capped() -> None:
    windows = LiveWindows(clock=lambda: T0, limits=LabelLimits(score_names=3, models=2))
    for i in range(DISTINCT):
        windows.on_score(
            Score(call_id="c", name=f"judge-{i}", value=0.5, model=f"m-{i}", created_at=at(T0 - 5))
        )
    view = windows.read(minutes=1)
    assert set(view.quality) == {"judge-0", "judge-1", "judge-2", OTHER}
    assert view.quality[OTHER] == 0.5
    assert windows.caps[1].folds["name"] == DISTINCT - 3


def test_memory_stops_growing_once_the_cap_is_full() -> None:
    windows = LiveWindows(clock=lambda: T0, limits=LabelLimits(live_keys=100))
    for i in range(1_000):
        windows.on_call(distinct_call(i, T0 - 10))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1_000, DISTINCT):
            windows.on_call(distinct_call(i, T0 - 10))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Uncapped, each new key held an aggregate of about 2.3 KB: 9,000 of them ~20 MB.
    assert grown < 64 * 1024
    assert keys_held(windows) <= 2 * (100 + 1)


def test_configure_caps_both_and_exports_the_windows_folds() -> None:
    runtime = aivitals.configure(
        label_limits=LabelLimits(models=3), store=False, endpoint=False, metrics_port=None
    )
    try:
        for i in range(100):
            with aivitals.track(model=f"m-{i}", provider="openai"):
                pass
        assert aivitals.flush()  # the SDK records its calls off the caller's thread
        assert runtime.prometheus is not None and runtime.windows is not None
        get = runtime.prometheus.registry.get_sample_value
        for metric in ("aivitals_requests_total", "live_windows"):
            assert get("aivitals_label_overflow_total", {"metric": metric, "label": "model"}) == 97
        assert {key[1] for key in runtime.windows.keys(minutes=1)} == {"m-0", "m-1", "m-2", OTHER}
    finally:
        reset()
