"""PromQL for the dashboards: which filter each metric can take, and the selectors that apply them.

A Grafana filter variable may only narrow a metric that carries its label: ``team=~"$team"`` on
a metric without ``team`` would match only when the variable is "All" and hide every series as
soon as a team is picked. `METRIC_LABELS` holds the labels of the metric schema
(`aivitals.metric_schema`, documented in docs/metrics.md), so a selector applies exactly the filters
its metric can answer.

>>> from aivitals.metric_schema import COST, DURATION, QUEUE_DEPTH
>>> selector(COST)
'aivitals_cost_usd_total{provider=~"$provider", model=~"$model", feature=~"$feature", team=~"$team"}'
>>> selector(DURATION, "_bucket", 'operation="chat"')
'aivitals_request_duration_seconds_bucket{provider=~"$provider", model=~"$model", operation="chat"}'
>>> selector(QUEUE_DEPTH)
'aivitals_queue_depth'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aivitals.metric_schema import METRICS, MetricSpec

FILTERS = ("provider", "model", "feature", "team")
"""The filter variables, in the order Grafana shows them; each is a label of some metric."""

METRIC_LABELS: Mapping[str, frozenset[str]] = {
    spec.name: frozenset(spec.labels) for spec in METRICS
}
"""Every metric a dashboard may read, with its labels (`aivitals.metric_schema`)."""


def selector(
    metric: MetricSpec, suffix: str = "", *matchers: str, filters: Sequence[str] = FILTERS
) -> str:
    """``metric`` + ``suffix`` narrowed by each filter variable its labels allow, then ``matchers``.

    ``suffix`` names a histogram's series (``_bucket``, ``_sum``, ``_count``); ``matchers`` are
    fixed ones such as ``status="error"``; ``filters`` limits the variables applied (the two
    sides of a ratio must be narrowed alike).
    """
    parts = [f'{name}=~"${name}"' for name in filters if name in metric.labels]
    parts.extend(matchers)
    name = metric.name + suffix
    return f"{name}{{{', '.join(parts)}}}" if parts else name


def rate(
    metric: MetricSpec, suffix: str = "", *matchers: str, filters: Sequence[str] = FILTERS
) -> str:
    """``rate(selector[$__rate_interval])``: per second, over Grafana's rate interval."""
    return f"rate({selector(metric, suffix, *matchers, filters=filters)}[$__rate_interval])"


def increase(
    metric: MetricSpec, suffix: str = "", *matchers: str, filters: Sequence[str] = FILTERS
) -> str:
    """``increase(selector[$__range])``: the total over the dashboard's time range."""
    return f"increase({selector(metric, suffix, *matchers, filters=filters)}[$__range])"


def quantile(q: float, metric: MetricSpec, *, by: str = "") -> str:
    """``histogram_quantile`` of a histogram's rate, optionally per label(s) ``by``."""
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) ({rate(metric, '_bucket')}))"
