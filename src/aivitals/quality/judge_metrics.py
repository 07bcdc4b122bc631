"""`JudgeCollector`: the LLM judge's counters and budget, read at scrape time.

Registered on the runtime's Prometheus registry when a judge is configured; judging pays
nothing for its metrics (the collector reads `JudgeStats` and the `DailySpend` when scraped).
The names are declared in `aivitals.metric_schema` (``JUDGE_METRICS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from aivitals import metric_schema as schema
from aivitals.quality.judge import OUTCOMES, JudgeStats
from aivitals.quality.judge_budget import DailySpend


class JudgeCollector(Collector):
    """The judge's metrics from its ``stats``, ``budget`` and ``queue_depth`` (a callable)."""

    def __init__(
        self, stats: JudgeStats, budget: DailySpend, queue_depth: Callable[[], int]
    ) -> None:
        self._stats = stats
        self._budget = budget
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        spec = schema.JUDGE_REQUESTS
        requests = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        for outcome in OUTCOMES:
            requests.add_metric([outcome], stats.outcomes[outcome])
        yield requests
        yield CounterMetricFamily(
            schema.JUDGE_RETRIES.name, schema.JUDGE_RETRIES.help, value=stats.retries
        )
        yield CounterMetricFamily(
            schema.JUDGE_MISSING_CRITERIA.name,
            schema.JUDGE_MISSING_CRITERIA.help,
            value=stats.missing_criteria,
        )
        yield GaugeMetricFamily(
            schema.JUDGE_QUEUE_DEPTH.name, schema.JUDGE_QUEUE_DEPTH.help, value=self._queue_depth()
        )
        budget = self._budget
        yield GaugeMetricFamily(
            schema.JUDGE_SPENT.name, schema.JUDGE_SPENT.help, value=float(budget.spent_usd)
        )
        cap = GaugeMetricFamily(schema.JUDGE_BUDGET.name, schema.JUDGE_BUDGET.help)
        if budget.cap_usd is not None:
            cap.add_metric([], float(budget.cap_usd))
        yield cap
        yield GaugeMetricFamily(
            schema.JUDGE_BUDGET_EXHAUSTED.name,
            schema.JUDGE_BUDGET_EXHAUSTED.help,
            value=1.0 if budget.exhausted else 0.0,
        )
