"""One scrape for the whole server: each worker's metrics merged by the worker that takes it.

Every worker of ``serve --workers N`` also serves its own metrics alone on a private
``127.0.0.1`` port (`prometheus_client.start_http_server`, on a thread), written to
``worker-<index>.port`` in the supervisor's run directory. ``GET /metrics`` on the shared port
reaches one worker; its `MergedCollector` reads its own registry, fetches every sibling's
exposition (OpenMetrics, so exemplars and types survive; parsed by prometheus_client's parser)
and merges them (`merge_families`):

- counters, histograms (buckets, sums, counts), summaries and gauges that add up across
  processes (requests in flight, queue depths, cache sizes) are summed, series by series;
- per-process families (``process_*``, ``python_*``) keep one series per worker, labelled
  ``worker="<index>"``;
- gauges that every worker reads from the same source (a GPU, the judge's daily budget) are
  the same everywhere: the largest value is kept, not N times it.

A sibling that does not answer (restarting, say) is left out of that scrape and logged. A
restarted worker's counters begin again at zero, which Prometheus reads as a counter reset of
the sum (``rate()`` copes; an ``increase()`` across it over-counts that window).

Why not prometheus_client's multiprocess mode: it cannot carry custom collectors (the label
overflow, the judge's and the GPU's families are collectors), exemplars, or the process
metrics, and it changes every metric's storage at import time for the whole process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from aivitals.metric_schema import GPU_METRICS, JUDGE_BUDGET, JUDGE_BUDGET_EXHAUSTED, JUDGE_SPENT

logger = logging.getLogger("aivitals.server")

PER_PROCESS_PREFIXES = ("process_", "python_")
SAME_EVERYWHERE = frozenset(
    {spec.name for spec in GPU_METRICS}
    | {JUDGE_BUDGET.name, JUDGE_BUDGET_EXHAUSTED.name}
    | {JUDGE_SPENT.name}
)
"""Gauges each worker reads from one shared source: kept once (the largest), never summed."""
WORKER_LABEL = "worker"
PEER_TIMEOUT_S = 2.0
_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Key = tuple[str, tuple[tuple[str, str], ...]]


def merge_families(sources: Iterable[tuple[str, Iterable[Metric]]]) -> list[Metric]:
    """Merge each worker's families (``(worker index, families)`` pairs) into one set.

    >>> from prometheus_client.core import CounterMetricFamily
    >>> def worker(n):
    ...     family = CounterMetricFamily("hits", "Hits.", labels=["route"])
    ...     family.add_metric(["/"], n)
    ...     return [family]
    >>> (merged,) = merge_families([("0", worker(2.0)), ("1", worker(3.0))])
    >>> [(s.name, s.labels, s.value) for s in merged.samples]
    [('hits_total', {'route': '/'}, 5.0)]
    """
    merged: dict[str, Metric] = {}
    series: dict[str, dict[Key, Sample]] = {}
    for worker, families in sources:
        for family in families:
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                series[family.name] = {}
            kept = series[family.name]
            # "python" too: an info family's name has lost its "_info".
            per_process = f"{family.name}_".startswith(PER_PROCESS_PREFIXES)
            for sample in family.samples:
                labels = dict(sample.labels)
                if per_process:
                    labels[WORKER_LABEL] = worker
                key = (sample.name, tuple(sorted(labels.items())))
                before = kept.get(key)
                if before is None:
                    kept[key] = sample._replace(labels=labels)
                    continue
                kept[key] = _combine(family, before, sample)
    for name, family in merged.items():
        family.samples = list(series[name].values())
    return list(merged.values())


def _combine(family: Metric, before: Sample, sample: Sample) -> Sample:
    if family.type in ("info", "stateset") or family.name in SAME_EVERYWHERE:
        value = max(before.value, sample.value)
    else:
        value = before.value + sample.value
    # One exemplar a series is all OpenMetrics carries: any worker's trace is one to follow.
    exemplar = before.exemplar if before.exemplar is not None else sample.exemplar
    timestamp = before.timestamp if before.timestamp is not None else sample.timestamp
    return before._replace(value=value, exemplar=exemplar, timestamp=timestamp)


def port_file(run_dir: Path, index: int) -> Path:
    return run_dir / f"worker-{index}.port"


class PrivateExposition:
    """This worker's own metrics on a private port, registered in the run directory."""

    def __init__(self, registry: CollectorRegistry, run_dir: Path, index: int) -> None:
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        self.port = int(self._server.server_port)
        self._file = port_file(run_dir, index)
        temporary = self._file.with_suffix(".tmp")
        temporary.write_text(str(self.port), "ascii")
        os.replace(temporary, self._file)  # a sibling never reads half a number

    def close(self) -> None:
        self._file.unlink(missing_ok=True)
        self._server.shutdown()
        self._server.server_close()


class MergedCollector(Collector):
    """The local ``registry`` merged with every sibling's exposition found in ``run_dir``."""

    def __init__(self, registry: CollectorRegistry, run_dir: Path, index: int) -> None:
        self._registry = registry
        self._run_dir = run_dir
        self._index = index
        self._client = httpx.Client(timeout=PEER_TIMEOUT_S, headers={"accept": _OPENMETRICS})

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing to check at registration: names come from the workers

    def collect(self) -> Iterator[Metric]:
        sources: list[tuple[str, Iterable[Metric]]] = [
            (str(self._index), list(self._registry.collect()))
        ]
        for path in sorted(self._run_dir.glob("worker-*.port")):
            index = path.name.removeprefix("worker-").removesuffix(".port")
            if index == str(self._index):
                continue
            families = self._fetch(index, path)
            if families is not None:
                sources.append((index, families))
        return iter(merge_families(sources))

    def _fetch(self, index: str, path: Path) -> list[Metric] | None:
        try:
            port = int(path.read_text("ascii"))
            reply = self._client.get(f"http://127.0.0.1:{port}/metrics")
            reply.raise_for_status()
            # Untyped in prometheus_client.
            return list(text_string_to_metric_families(reply.text))  # type: ignore[no-untyped-call]
        except (OSError, ValueError, httpx.HTTPError) as exc:
            logger.warning(
                "metrics: worker %s did not answer (%s); this scrape leaves it out", index, exc
            )
            return None

    def close(self) -> None:
        self._client.close()


def merged_registry(registry: CollectorRegistry, run_dir: Path, index: int) -> CollectorRegistry:
    """A registry whose scrape is the whole server: ``registry`` and the siblings' metrics."""
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(MergedCollector(registry, run_dir, index))
    return scrape
