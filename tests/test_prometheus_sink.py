from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from prometheus_client import generate_latest

from aivitals.metric_schema import DURATION_BUCKETS
from aivitals.model import Score
from aivitals.recorder import Recorder
from aivitals.sinks.prometheus import PrometheusSink

from .support.helpers import make_call


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
    assert get("aivitals_tokens_total", {**model, "type": "output"}) == 240
    assert get("aivitals_input_tokens_total", {**model, "kind": "cache_read"}) == 16000
    assert get("aivitals_output_tokens_total", {**model, "kind": "reasoning"}) == 40
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


def test_in_flight_gauge_is_exact_after_concurrent_threads_and_scrapes() -> None:
    # Starts and ends from many threads, through the sink by name and through the recorder's
    # counters (the SDK's path), with scrapes in between (a read advances the counters too).
    sink = PrometheusSink()
    recorder = Recorder(inline_sinks=[sink])
    threads, starts, ends = 6, 3000, 2000
    labels = {"provider": "openai", "model": "gpt-4o"}
    scraping = threading.Event()
    seen: list[float | None] = []

    def work(k: int) -> None:
        for i in range(starts):
            if (i + k) % 2:
                sink.call_started("openai", "gpt-4o")
            else:
                recorder.in_flight("openai", "gpt-4o")[0]()
        for i in range(ends):
            if (i + k) % 2:
                recorder.in_flight("openai", "gpt-4o")[1]()
            else:
                sink.call_ended("openai", "gpt-4o")

    def scrape() -> None:
        while not scraping.is_set():
            seen.append(sink.registry.get_sample_value("aivitals_requests_in_flight", labels))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        scraper = threading.Thread(target=scrape)
        scraper.start()
        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        scraping.set()
        scraper.join()
    finally:
        sys.setswitchinterval(interval)
        recorder.close()
    assert sink.registry.get_sample_value("aivitals_requests_in_flight", labels) == 6 * 1000
    assert seen and all(value is None or 0 <= value <= 6 * 3000 for value in seen)


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


def token_samples(sink: PrometheusSink, family: str) -> dict[str, float]:
    """The samples of ``family`` by their one non-model label."""
    [found] = [f for f in sink.registry.collect() if f.name == family]
    out: dict[str, float] = {}
    for sample in found.samples:
        if sample.name.endswith("_total"):
            (value,) = (v for k, v in sample.labels.items() if k not in {"provider", "model"})
            out[value] = out.get(value, 0) + sample.value
    return out


def test_token_labels_partition_the_tokens_so_sums_mean_something() -> None:
    sink = PrometheusSink()
    # 10,000 in: 6,000 read from the prompt cache, 1,500 written to it, 2,500 neither.
    # 900 out: 300 of them reasoning.
    sink.on_call(
        make_call(
            input_tokens=10_000,
            cached_input_tokens=6_000,
            cache_write_tokens=1_500,
            output_tokens=900,
            reasoning_tokens=300,
        )
    )
    sink.on_call(make_call(operation="embeddings", input_tokens=50, output_tokens=0))
    tokens = token_samples(sink, "aivitals_tokens")
    assert tokens == {"input": 10_050, "output": 900}
    assert sum(tokens.values()) == 10_950  # every token once
    inputs = token_samples(sink, "aivitals_input_tokens")
    assert inputs == {"uncached": 2_550, "cache_read": 6_000, "cache_write": 1_500}
    assert sum(inputs.values()) == 10_050
    outputs = token_samples(sink, "aivitals_output_tokens")
    assert outputs == {"non_reasoning": 600, "reasoning": 300}
    assert sum(outputs.values()) == 900


@dataclass(frozen=True)
class Counts:
    """A recorder's counters without a recorder: what the sink reads of one."""

    dropped_calls: int = 3
    dropped_scores: int = 1
    internal_errors: int = 2
    sink_errors: Mapping[str, int] = field(default_factory=lambda: {"store": 2})
    sink_failed_items: Mapping[str, int] = field(default_factory=lambda: {"store": 40})
    quality_dropped: Mapping[str, int] = field(default_factory=lambda: {"queue_full": 6})
    quality_errors: Mapping[str, int] = field(default_factory=lambda: {"evaluator/mine": 1})


def test_recorder_health_needs_only_the_counts_and_buffers() -> None:
    sink = PrometheusSink()
    sink.watch(
        stats=Counts(),
        buffered=lambda: {("recorder", "queue"): 7, ("store", "store_retry"): 5},
        lost=lambda: {("recorder", "queue_full"): 4},
    )
    get = sink.registry.get_sample_value
    assert get("aivitals_dropped_calls_total", {}) == 3
    assert get("aivitals_dropped_scores_total", {}) == 1
    assert get("aivitals_internal_errors_total", {}) == 2
    assert get("aivitals_sink_errors_total", {"sink": "store"}) == 2
    assert get("aivitals_sink_failed_items_total", {"sink": "store"}) == 40
    assert get("aivitals_queue_depth", {}) == 12
    assert get("aivitals_buffered_items", {"sink": "store", "buffer": "store_retry"}) == 5
    assert get("aivitals_lost_items_total", {"sink": "recorder", "reason": "queue_full"}) == 4
    assert get("aivitals_quality_dropped_total", {"reason": "queue_full"}) == 6
    assert get("aivitals_quality_errors_total", {"part": "evaluator/mine"}) == 1


def test_recorder_health_is_exported() -> None:
    sink = PrometheusSink()
    recorder = Recorder(inline_sinks=[sink])
    sink.watch(stats=recorder.stats, buffered=recorder.buffered, lost=recorder.lost)
    recorder.stats.dropped_calls = 3
    recorder.stats.sink_errors["store"] = 2
    recorder.stats.sink_failed_items["store"] = 40
    get = sink.registry.get_sample_value
    assert get("aivitals_dropped_calls_total", {}) == 3
    assert get("aivitals_sink_errors_total", {"sink": "store"}) == 2
    assert get("aivitals_sink_failed_items_total", {"sink": "store"}) == 40
    assert get("aivitals_queue_depth", {}) == 0
