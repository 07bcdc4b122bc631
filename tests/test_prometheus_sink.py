from __future__ import annotations

import itertools
from decimal import Decimal

from prometheus_client import generate_latest

from aivitals.model import Score
from aivitals.recorder import Recorder
from aivitals.sinks.prometheus import DURATION_BUCKETS, PrometheusSink

from .helpers import make_call


def test_call_updates_every_family() -> None:
    sink = PrometheusSink()
    sink.on_call(
        make_call(
            latency_ms=1500.0,
            ttft_ms=300.0,
            input_tokens=32000,
            cached_input_tokens=16000,
            output_tokens=240,
            reasoning_tokens=40,
            cost_usd=Decimal("0.25"),
            feature="search",
            team="core",
            user="alice@example.com",
            cache="miss",
            cache_level="exact",
            context_window=128000,
        )
    )
    get = sink.registry.get_sample_value
    model = {"provider": "openai", "model": "gpt-4o-mini"}
    assert (
        get(
            "aivitals_requests_total",
            {**model, "operation": "chat", "status": "ok", "error_type": ""},
        )
        == 1
    )
    assert get("aivitals_request_duration_seconds_sum", {**model, "operation": "chat"}) == 1.5
    assert get("aivitals_time_to_first_token_seconds_sum", model) == 0.3
    assert get("aivitals_tokens_total", {**model, "type": "input"}) == 32000
    assert get("aivitals_tokens_total", {**model, "type": "cached_input"}) == 16000
    assert get("aivitals_tokens_total", {**model, "type": "output"}) == 240
    assert get("aivitals_tokens_total", {**model, "type": "reasoning"}) == 40
    assert get("aivitals_cost_usd_total", {**model, "feature": "search", "team": "core"}) == 0.25
    assert get("aivitals_cache_requests_total", {**model, "result": "miss", "level": "exact"}) == 1
    # 240 tokens over the 1.2 s after the first token: 200 tokens/s, in the (150, 200] bucket.
    assert get("aivitals_output_tokens_per_second_bucket", {**model, "le": "200.0"}) == 1
    assert get("aivitals_output_tokens_per_second_bucket", {**model, "le": "150.0"}) == 0
    assert get("aivitals_context_utilisation_ratio_bucket", {**model, "le": "0.3"}) == 1
    assert get("aivitals_context_utilisation_ratio_bucket", {**model, "le": "0.2"}) == 0


def test_no_user_or_content_in_any_label() -> None:
    sink = PrometheusSink()
    sink.on_call(make_call(user="alice@example.com", tags={"prompt": "secret text"}))
    exposition = generate_latest(sink.registry).decode()
    assert "alice" not in exposition
    assert "secret" not in exposition


def test_errors_and_scores() -> None:
    sink = PrometheusSink()
    sink.on_call(make_call(status="error", error_type="rate_limit", http_status=429))
    sink.on_score(
        Score(call_id="c", name="faithfulness", value=3, max_value=4, model="gpt-4o-mini")
    )
    get = sink.registry.get_sample_value
    labels = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "operation": "chat",
        "status": "error",
        "error_type": "rate_limit",
    }
    assert get("aivitals_requests_total", labels) == 1
    score_labels = {"name": "faithfulness", "model": "gpt-4o-mini", "feature": ""}
    assert get("aivitals_quality_score_sum", score_labels) == 0.75


def test_in_flight_gauge() -> None:
    sink = PrometheusSink()
    sink.call_started("openai", "gpt-4o")
    sink.call_started("openai", "gpt-4o")
    sink.call_ended("openai", "gpt-4o")
    assert (
        sink.registry.get_sample_value(
            "aivitals_requests_in_flight", {"provider": "openai", "model": "gpt-4o"}
        )
        == 1
    )


def test_duration_buckets_are_the_opentelemetry_genai_ones() -> None:
    assert DURATION_BUCKETS[0] == 0.01
    assert DURATION_BUCKETS[-1] == 81.92
    assert all(b == round(a * 2, 2) for a, b in itertools.pairwise(DURATION_BUCKETS))


def test_recorder_health_is_exported() -> None:
    sink = PrometheusSink()
    recorder = Recorder(inline_sinks=[sink])
    sink.watch(recorder)
    recorder.stats.dropped_calls = 3
    recorder.stats.sink_errors["store"] = 2
    recorder.stats.sink_failed_items["store"] = 40
    get = sink.registry.get_sample_value
    assert get("aivitals_dropped_calls_total", {}) == 3
    assert get("aivitals_sink_errors_total", {"sink": "store"}) == 2
    assert get("aivitals_sink_failed_items_total", {"sink": "store"}) == 40
    assert get("aivitals_queue_depth", {}) == 0
