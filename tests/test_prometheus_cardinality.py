"""Label cardinality of the Prometheus sink: 10,000 distinct models must not mean 10,000 series.

Issue 10 measured it: 10,000 distinct model names made ``/metrics`` 178 MB and 730k series. The
defaults these tests hold the sink to are the ones docs/metrics.md states (200 models, 50
providers, 500 features, 200 teams; 500 (provider, model, operation) and 2,000 (provider, model,
feature, team) label sets per family), written out here rather than read from the code.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections import Counter
from decimal import Decimal

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aivitals.cardinality import OTHER, LabelLimits
from aivitals.model import Call, Score
from aivitals.sinks.prometheus import PrometheusSink

from .support.helpers import make_call

DISTINCT = 10_000


def distinct_call(i: int, **overrides: object) -> Call:
    fields: dict[str, object] = {
        "provider": "openai",
        "model": f"model-{i:05d}",
        "feature": f"feature-{i:05d}",
        "team": f"team-{i:05d}",
        "ttft_ms": 40.0,
        "cost_usd": Decimal("0.001"),
        "context_window": 128_000,
        "cache": "miss",
        "cache_level": "exact",
        **overrides,
    }
    return make_call(**fields)


def series_per_family(sink: PrometheusSink) -> Counter[str]:
    exposition = generate_latest(sink.registry).decode()
    return Counter(
        family.name for family in text_string_to_metric_families(exposition) for _ in family.samples
    )


def label_values(sink: PrometheusSink, sample: str, label: str) -> Counter[str]:
    """How many samples named ``sample`` carry each value of ``label``."""
    exposition = generate_latest(sink.registry).decode()
    return Counter(
        one.labels[label]
        for family in text_string_to_metric_families(exposition)
        for one in family.samples
        if one.name == sample
    )


def overflow(sink: PrometheusSink, metric: str, label: str) -> float | None:
    return sink.registry.get_sample_value(
        "aivitals_label_overflow_total", {"metric": metric, "label": label}
    )


def test_ten_thousand_models_keep_the_default_caps() -> None:
    sink = PrometheusSink()
    for i in range(DISTINCT):
        sink.on_call(distinct_call(i))
    models = label_values(sink, "aivitals_requests_total", "model")
    # The first 200 models keep their own series; the other 9,800 share one.
    assert len(models) == 201
    assert "model-00000" in models and "model-00199" in models and "model-00200" not in models
    get = sink.registry.get_sample_value
    other = {"provider": "openai", "model": OTHER, "operation": "chat"}
    assert get("aivitals_requests_total", {**other, "status": "ok", "error_type": ""}) == 9_800
    assert get(
        "aivitals_tokens_total", {"provider": "openai", "model": OTHER, "type": "input"}
    ) == (9_800 * 1000)
    assert overflow(sink, "aivitals_requests_total", "model") == 9_800
    # Cost by feature and team: at most 500 features and 200 teams of their own.
    features = label_values(sink, "aivitals_cost_usd_total", "feature")
    teams = label_values(sink, "aivitals_cost_usd_total", "team")
    assert len(features) == 501 and len(teams) == 201
    assert overflow(sink, "aivitals_cost_usd_total", "team") == DISTINCT - 200
    assert sum(features.values()) <= 2_000 + 201
    spend = sum(
        one.value
        for family in text_string_to_metric_families(generate_latest(sink.registry).decode())
        for one in family.samples
        if one.name == "aivitals_cost_usd_total"
    )
    assert abs(spend - DISTINCT * 0.001) < 1e-6  # folding moves spend, never loses it
    families = series_per_family(sink)
    # Per model: 15 + 2 duration samples, 17 ttft, 5 token types, 15 context, ...: under 100.
    for name, count in families.items():
        assert count <= 201 * 100, f"{name}: {count} series"
    assert sum(families.values()) < 25_000  # it was 750,000 before the cap


def test_distinct_providers_features_and_teams_are_capped_too() -> None:
    sink = PrometheusSink(
        limits=LabelLimits(providers=5, models=10, features=20, teams=3, attribution_series=40)
    )
    for i in range(DISTINCT):
        sink.on_call(distinct_call(i, provider=f"provider-{i % 50}", model=f"m-{i % 30}"))
    assert len(label_values(sink, "aivitals_requests_total", "provider")) <= 5 + 1
    assert len(label_values(sink, "aivitals_requests_total", "model")) <= 10 + 1
    teams = label_values(sink, "aivitals_cost_usd_total", "team")
    assert len(teams) <= 3 + 1 and OTHER in teams
    assert len(label_values(sink, "aivitals_cost_usd_total", "feature")) <= 20 + 1
    # 40 label sets, plus one all-folded (feature, team) set per (provider, model) kept.
    assert sum(teams.values()) <= 40 + 6 * 11
    assert overflow(sink, "aivitals_requests_total", "provider") == DISTINCT - DISTINCT // 10
    assert (overflow(sink, "aivitals_cost_usd_total", "team") or 0) >= DISTINCT - 40
    # Every call is still counted once, under its own labels or under _other.
    requests = sum(label_values(sink, "aivitals_requests_total", "model").values())
    assert requests <= 6 * 11
    total = sum(
        one.value
        for family in text_string_to_metric_families(generate_latest(sink.registry).decode())
        for one in family.samples
        if one.name == "aivitals_requests_total"
    )
    assert total == DISTINCT


def test_a_model_seen_before_the_cap_filled_keeps_its_series() -> None:
    sink = PrometheusSink(limits=LabelLimits(models=2))
    for model in ("a", "b", "c", "a", "d", "b"):
        sink.on_call(make_call(model=model))
    models = label_values(sink, "aivitals_requests_total", "model")
    assert set(models) == {"a", "b", OTHER}
    get = sink.registry.get_sample_value
    ok = {"provider": "openai", "operation": "chat", "status": "ok", "error_type": ""}
    assert get("aivitals_requests_total", {**ok, "model": "a"}) == 2
    assert get("aivitals_requests_total", {**ok, "model": OTHER}) == 2
    assert overflow(sink, "aivitals_requests_total", "model") == 2


def test_overflow_counters_show_zero_before_any_fold() -> None:
    sink = PrometheusSink()
    sink.on_call(make_call())
    assert overflow(sink, "aivitals_requests_total", "model") == 0
    assert overflow(sink, "aivitals_cost_usd_total", "feature") == 0
    assert overflow(sink, "aivitals_quality_score", "name") == 0


def test_in_flight_folds_the_same_way_on_start_and_end() -> None:
    sink = PrometheusSink(limits=LabelLimits(models=3))
    for i in range(DISTINCT):
        sink.call_started("openai", f"m-{i}")
    for i in range(DISTINCT - 1):
        sink.call_ended("openai", f"m-{i}")
    flight = label_values(sink, "aivitals_requests_in_flight", "model")
    assert len(flight) == 4
    get = sink.registry.get_sample_value
    assert get("aivitals_requests_in_flight", {"provider": "openai", "model": OTHER}) == 1
    assert get("aivitals_requests_in_flight", {"provider": "openai", "model": "m-0"}) == 0
    assert overflow(sink, "aivitals_requests_in_flight", "model") == DISTINCT - 3


def test_quality_scores_with_distinct_names_are_capped() -> None:
    sink = PrometheusSink(limits=LabelLimits(score_names=4, models=2))
    for i in range(DISTINCT):
        sink.on_score(Score(call_id="c", name=f"judge-{i}", value=1.0, model=f"m-{i}"))
    names = label_values(sink, "aivitals_quality_score_count", "name")
    assert len(names) <= 4 + 1 and OTHER in names
    assert sum(names.values()) <= 500 + 1
    assert overflow(sink, "aivitals_quality_score", "name") == DISTINCT - 4
    count = sum(
        one.value
        for family in text_string_to_metric_families(generate_latest(sink.registry).decode())
        for one in family.samples
        if one.name == "aivitals_quality_score_count"
    )
    assert count == DISTINCT


def test_memory_stops_growing_once_the_cap_is_full() -> None:
    sink = PrometheusSink(limits=LabelLimits(models=100, features=100, teams=100))
    for i in range(1_000):
        sink.on_call(distinct_call(i))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1_000, DISTINCT):
            sink.on_call(distinct_call(i))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Uncapped, each new model held about 2.5 KB of series: 9,000 of them would be ~22 MB.
    assert grown < 64 * 1024
    assert sum(series_per_family(sink).values()) < 101 * 100
