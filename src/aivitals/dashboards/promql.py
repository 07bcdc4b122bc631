"""PromQL for the dashboards: which filter each metric can take, and the selectors that apply them.

A Grafana filter variable may only narrow a metric that carries its label: ``team=~"$team"`` on
a metric without ``team`` would match only when the variable is "All" and hide every series as
soon as a team is picked. `METRIC_LABELS` holds the labels of docs/metrics.md, so a selector
applies exactly the filters its metric can answer.

>>> selector("aivitals_cost_usd_total")
'aivitals_cost_usd_total{provider=~"$provider", model=~"$model", feature=~"$feature", team=~"$team"}'
>>> selector("aivitals_request_duration_seconds", "_bucket", 'operation="chat"')
'aivitals_request_duration_seconds_bucket{provider=~"$provider", model=~"$model", operation="chat"}'
"""

from __future__ import annotations

from collections.abc import Sequence

FILTERS = ("provider", "model", "feature", "team")
"""The filter variables, in the order Grafana shows them; each is a label of some metric."""

METRIC_LABELS: dict[str, frozenset[str]] = {
    "aivitals_requests_total": frozenset(
        {"provider", "model", "operation", "status", "error_type"}
    ),
    "aivitals_request_duration_seconds": frozenset({"provider", "model", "operation"}),
    "aivitals_time_to_first_token_seconds": frozenset({"provider", "model"}),
    "aivitals_tokens_total": frozenset({"provider", "model", "type"}),
    "aivitals_cost_usd_total": frozenset({"provider", "model", "feature", "team"}),
    "aivitals_unpriced_calls_total": frozenset({"provider", "model"}),
    "aivitals_cache_requests_total": frozenset({"provider", "model", "result", "level"}),
    "aivitals_cache_saved_usd_total": frozenset({"provider", "model"}),
    "aivitals_requests_in_flight": frozenset({"provider", "model"}),
    "aivitals_output_tokens_per_second": frozenset({"provider", "model"}),
    "aivitals_context_utilisation_ratio": frozenset({"provider", "model"}),
    "aivitals_quality_score": frozenset({"name", "model", "feature"}),
    "aivitals_dropped_calls_total": frozenset(),
    "aivitals_dropped_scores_total": frozenset(),
    "aivitals_sink_errors_total": frozenset({"sink"}),
    "aivitals_queue_depth": frozenset(),
    "aivitals_http_server_requests_total": frozenset({"method", "route", "status"}),
    "process_cpu_seconds_total": frozenset(),
    "process_resident_memory_bytes": frozenset(),
    "process_start_time_seconds": frozenset(),
}
"""Every metric the dashboard reads, with its labels (docs/metrics.md, docs/server.md)."""


def selector(
    metric: str, suffix: str = "", *matchers: str, filters: Sequence[str] = FILTERS
) -> str:
    """``metric`` + ``suffix`` narrowed by each filter variable its labels allow, then ``matchers``.

    ``suffix`` names a histogram's series (``_bucket``, ``_sum``, ``_count``); ``matchers`` are
    fixed ones such as ``status="error"``; ``filters`` limits the variables applied (the two
    sides of a ratio must be narrowed alike). An unknown metric raises `KeyError`: every name
    must be one of the documented contract.
    """
    labels = METRIC_LABELS[metric]
    parts = [f'{name}=~"${name}"' for name in filters if name in labels]
    parts.extend(matchers)
    return f"{metric}{suffix}{{{', '.join(parts)}}}" if parts else f"{metric}{suffix}"


def rate(metric: str, suffix: str = "", *matchers: str, filters: Sequence[str] = FILTERS) -> str:
    """``rate(selector[$__rate_interval])``: per second, over Grafana's rate interval."""
    return f"rate({selector(metric, suffix, *matchers, filters=filters)}[$__rate_interval])"


def increase(
    metric: str, suffix: str = "", *matchers: str, filters: Sequence[str] = FILTERS
) -> str:
    """``increase(selector[$__range])``: the total over the dashboard's time range."""
    return f"increase({selector(metric, suffix, *matchers, filters=filters)}[$__range])"


def quantile(q: float, metric: str, *, by: str = "") -> str:
    """``histogram_quantile`` of a histogram's rate, optionally per label(s) ``by``."""
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({grouping}) ({rate(metric, '_bucket')}))"
