"""How one worker merges its siblings' metrics (`aivitals.server.worker_metrics`): what adds up,
what stays per worker, what is the same everywhere, and that the result is a valid exposition
in both formats, exemplars included."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Sample

from aivitals.metric_schema import JUDGE_BUDGET
from aivitals.server.worker_metrics import merge_families


def worker_registry(
    hits: dict[str, int], latencies: list[float], in_flight: int, memory: float
) -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("hits", "Hits.", ["route"], registry=registry)
    for route, count in hits.items():
        counter.labels(route).inc(count)
    histogram = Histogram("lat_seconds", "Latency.", buckets=(0.1, 1.0), registry=registry)
    for value in latencies:
        histogram.observe(value, exemplar={"trace_id": f"t{value}"} if value < 0.1 else None)
    Gauge("in_flight", "Now.", registry=registry).set(in_flight)
    Gauge(JUDGE_BUDGET.name, JUDGE_BUDGET.help, registry=registry).set(5)
    Gauge("process_resident_memory_bytes", "Memory.", registry=registry).set(memory)
    return registry


def merged_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s
        for family in text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
        for s in family.samples
    }


def test_counters_histograms_and_additive_gauges_sum_process_gauges_stay_per_worker() -> None:
    first = worker_registry({"/a": 2}, [0.05, 0.5], in_flight=3, memory=100)
    second = worker_registry({"/a": 3, "/b": 1}, [2.0], in_flight=4, memory=200)
    # The sibling arrives as the scraping worker reads it: OpenMetrics text, parsed.
    exposed = generate_openmetrics(second).decode()  # type: ignore[no-untyped-call]
    sibling = text_string_to_metric_families(exposed)  # type: ignore[no-untyped-call]
    merged = merge_families([("0", first.collect()), ("1", sibling)])

    class Merged:
        def collect(self) -> object:
            return iter(merged)

    text = generate_openmetrics(Merged()).decode()  # type: ignore[no-untyped-call]
    samples = merged_samples(text)

    def value(name: str, **labels: str) -> float:
        return float(samples[(name, tuple(sorted(labels.items())))].value)

    assert value("hits_total", route="/a") == 5
    assert value("hits_total", route="/b") == 1
    assert value("lat_seconds_count") == 3
    assert value("lat_seconds_sum") == 0.05 + 0.5 + 2.0
    assert value("lat_seconds_bucket", le="0.1") == 1
    assert value("lat_seconds_bucket", le="1.0") == 2
    assert value("lat_seconds_bucket", le="+Inf") == 3
    exemplar = samples[("lat_seconds_bucket", (("le", "0.1"),))].exemplar
    assert exemplar is not None and exemplar.labels == {"trace_id": "t0.05"}
    assert value("in_flight") == 7
    assert value(JUDGE_BUDGET.name) == 5  # the same budget, read by both: not 10
    assert value("process_resident_memory_bytes", worker="0") == 100
    assert value("process_resident_memory_bytes", worker="1") == 200
    assert ("process_resident_memory_bytes", ()) not in samples

    # The Prometheus text format carries the same sums.
    plain = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_families(generate_latest(Merged()).decode())  # type: ignore[arg-type]
        for s in family.samples
    }
    assert plain[("hits_total", (("route", "/a"),))] == 5
    assert plain[("lat_seconds_count", ())] == 3
